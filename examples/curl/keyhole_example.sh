#!/usr/bin/env bash
# Keyhole from the shell: bash, curl, sha256sum, and python3 to read the JSON replies.
#
# Uploads a file through a signed link, downloads it through another and checks it is
# byte-identical, lists it, deletes it, and checks that the download link is dead afterwards.
# Every step that does not go as documented stops the script with a message naming the step and a
# non-zero exit status.
#
#   KEYHOLE_SERVER=http://127.0.0.1:8080 bash examples/curl/keyhole_example.sh [FILE]
#
# KEYHOLE_SERVER  where the API answers (default http://127.0.0.1:8080)
# KEYHOLE_TOKEN   API token, sent as "Authorization: Bearer ..." when set
# FILE            the file to upload; default: 256 KiB of random bytes
#
# The token goes to the API only. Signed links carry their own authorisation; they are passed to
# curl exactly as the API returned them, in double quotes (the & in them must not reach the shell),
# and never re-encoded (no --data-urlencode, no -G, no "fixing" of ~ or %7E).
set -euo pipefail

SERVER=${KEYHOLE_SERVER:-http://127.0.0.1:8080}
SERVER=${SERVER%/}
AUTH=()
[[ -n ${KEYHOLE_TOKEN:-} ]] && AUTH=(-H "Authorization: Bearer $KEYHOLE_TOKEN")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

STEP="0 start"
fail() {
  echo "FAILED step $STEP: $*" >&2
  exit 1
}
# json FIELD < reply.json: prints one top-level field of a JSON reply (empty when absent).
json() {
  python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}
# api METHOD PATH [JSON]: calls the API, writes the reply to $WORK/reply.json, prints the status.
api() {
  local args=(-sS -o "$WORK/reply.json" -w '%{http_code}' -X "$1" -H 'accept: application/json' "${AUTH[@]}")
  [[ $# -ge 3 ]] && args+=(-H 'content-type: application/json' --data-binary "$3")
  curl "${args[@]}" "$SERVER$2" || true # curl prints 000 when it gets no answer
}
# expect_api STATUS METHOD PATH [JSON]: api, then fail unless the status is STATUS.
expect_api() {
  local want=$1 status
  shift
  status=$(api "$@")
  [[ $status != 000 ]] || fail "$1 $SERVER$2: no answer (is the server running there?)"
  if [[ $status != "$want" ]]; then
    fail "$1 $2 answered $status, expected $want: $(head -c 300 "$WORK/reply.json")"
  fi
  if [[ $want == 200 && $(json success <"$WORK/reply.json") != True ]]; then
    fail "$1 $2 answered 200 without success=true: $(head -c 300 "$WORK/reply.json")"
  fi
}

if [[ $# -ge 1 ]]; then
  FILE=$1
  NAME=$(basename "$FILE")
else
  FILE="$WORK/example-curl.bin"
  NAME=example-curl.bin
  head -c 262144 /dev/urandom >"$FILE"
fi
TYPE=application/octet-stream
SIZE=$(wc -c <"$FILE" | tr -d ' ')
SHA=$(sha256sum "$FILE" | cut -d' ' -f1)
echo "server $SERVER, $([[ -n ${KEYHOLE_TOKEN:-} ]] && echo with || echo without) a token; $NAME, $SIZE bytes, sha256 $SHA"

# 1. Ask for an upload link, declaring size and SHA-256 so the server refuses anything else.
STEP="1 create upload link"
BODY=$(python3 -c 'import json,sys; print(json.dumps({"filename": sys.argv[1], "contentType": sys.argv[2], "size": int(sys.argv[3]), "sha256": sys.argv[4]}))' \
  "$NAME" "$TYPE" "$SIZE" "$SHA")
expect_api 200 POST /api/files/upload "$BODY"
UPLOAD_URL=$(json uploadUrl <"$WORK/reply.json")
FILE_ID=$(json fileId <"$WORK/reply.json")
[[ -n $UPLOAD_URL && -n $FILE_ID ]] || fail "no uploadUrl/fileId in the reply: $(cat "$WORK/reply.json")"
echo "ok 1 upload link for $FILE_ID, expires $(json expiresAt <"$WORK/reply.json")"

# 2. PUT the bytes to the signed link with the declared Content-Type (no token: the link is the
#    authorisation). --data-binary sends the file as is; -T "$FILE" works too.
STEP="2 upload"
STATUS=$(curl -sS -X PUT -H "content-type: $TYPE" --data-binary "@$FILE" \
  -D "$WORK/put.headers" -o "$WORK/put.body" -w '%{http_code}' "$UPLOAD_URL") || fail "curl could not complete the PUT"
[[ $STATUS == 200 ]] || fail "PUT answered $STATUS: $(cat "$WORK/put.body")"
ETAG=$(tr -d '\r' <"$WORK/put.headers" | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p')
[[ $ETAG == "\"$SHA\"" ]] || fail "ETag $ETAG is not the SHA-256 of the bytes sent ($SHA)"
echo "ok 2 uploaded, ETag $ETAG"

# 3. Ask for a download link.
STEP="3 create download link"
expect_api 200 GET "/api/files/download/$FILE_ID"
DOWNLOAD_URL=$(json downloadUrl <"$WORK/reply.json")
[[ -n $DOWNLOAD_URL ]] || fail "no downloadUrl in the reply: $(cat "$WORK/reply.json")"
echo "ok 3 download link, expires $(json expiresAt <"$WORK/reply.json")"

# 4. Download and compare byte for byte.
STEP="4 download and verify"
STATUS=$(curl -sS -o "$WORK/download" -w '%{http_code}' "$DOWNLOAD_URL") || fail "curl could not complete the GET"
[[ $STATUS == 200 ]] || fail "GET answered $STATUS: $(head -c 300 "$WORK/download")"
cmp -s "$FILE" "$WORK/download" ||
  fail "downloaded $(wc -c <"$WORK/download") bytes with sha256 $(sha256sum "$WORK/download" | cut -d' ' -f1), expected $SIZE bytes with $SHA"
echo "ok 4 downloaded $(wc -c <"$WORK/download" | tr -d ' ') bytes, sha256 $(sha256sum "$WORK/download" | cut -d' ' -f1) matches"

# 5. The file is listed, uploaded, with the right size and checksum.
STEP="5 list"
expect_api 200 GET '/api/files?limit=1000'
CHECK_LISTED='
import json, sys
file_id, size, sha = sys.argv[1], int(sys.argv[2]), sys.argv[3]
entry = next((f for f in json.load(sys.stdin)["files"] if f["fileId"] == file_id), None)
if entry is None:
    sys.exit(f"{file_id} is not listed")
if (entry["status"], entry["size"], entry["sha256"]) != ("uploaded", size, sha):
    sys.exit(f"listed as {entry}")
'
python3 -c "$CHECK_LISTED" "$FILE_ID" "$SIZE" "$SHA" <"$WORK/reply.json" ||
  fail "the listing does not show the file as uploaded with size $SIZE and sha256 $SHA"
echo "ok 5 listed"

# 6. Delete it.
STEP="6 delete"
expect_api 200 DELETE "/api/files/$FILE_ID"
echo "ok 6 deleted"

# 7. The download link handed out before is dead at once, and the API no longer knows the file.
STEP="7 link dead after delete"
STATUS=$(curl -sS -o "$WORK/after" -w '%{http_code}' "$DOWNLOAD_URL") || fail "curl could not complete the GET"
[[ $STATUS == 404 ]] || fail "GET on the old download link answered $STATUS, expected 404: $(head -c 300 "$WORK/after")"
expect_api 404 GET "/api/files/$FILE_ID"
echo "ok 7 old download link answers 404 ($(sed -n 's/.*<Code>\(.*\)<\/Code>.*/\1/p' "$WORK/after")); GET /api/files/{fileId} answers 404"

echo "curl example: all steps passed"
