// Signs every compatibility case with @aws-sdk/cloudfront-signer (URL and cookies).
//
// Usage: node sign.mjs CASES.jsonl RSA_KEY.pem RSA_ID EC_KEY.pem EC_ID > OUT.jsonl
//
// Canned cases and custom cases whose resource is the URL itself go through the SDK's own policy
// builder (conditions ordered DateLessThan, DateGreaterThan, IpAddress). Wildcard resources go in
// as a policy string built in the same order. The SDK percent-encodes the URL path before signing
// a URL (not before signing cookies); a custom policy for "the URL itself" therefore names the
// URL as the SDK emits it.
import { readFileSync } from "node:fs";
import { getSignedCookies, getSignedUrl } from "@aws-sdk/cloudfront-signer";

const SIGNING = new Set(["Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"]);

function stripSigning(url) {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const kept = url
    .slice(q + 1)
    .split("&")
    .filter((pair) => !SIGNING.has(pair.split("=")[0]));
  return kept.length ? `${url.slice(0, q)}?${kept.join("&")}` : url.slice(0, q);
}

function policyJson(resource, c) {
  const condition = { DateLessThan: { "AWS:EpochTime": c.expires } };
  if (c.not_before) condition.DateGreaterThan = { "AWS:EpochTime": c.not_before };
  if (c.ip) {
    condition.IpAddress = { "AWS:SourceIp": c.ip.includes("/") ? c.ip : `${c.ip}/32` };
  }
  return JSON.stringify({ Statement: [{ Resource: resource, Condition: condition }] });
}

const [casesPath, rsaPath, rsaId, ecPath, ecId] = process.argv.slice(2);
const keys = {
  rsa: { privateKey: readFileSync(rsaPath, "utf8"), keyPairId: rsaId },
  ec: { privateKey: readFileSync(ecPath, "utf8"), keyPairId: ecId },
};

const out = [];
for (const line of readFileSync(casesPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  const base = {
    ...keys[c.key],
    algorithm: c.hash === "sha256" ? "SHA256" : undefined,
  };
  const dateLessThan = new Date(c.expires * 1000);
  let url;
  let cookies;
  if (c.policy === "canned") {
    url = getSignedUrl({ ...base, url: c.url, dateLessThan });
    cookies = getSignedCookies({ ...base, url: c.url, dateLessThan });
  } else if (c.resource === null && (c.ip || c.not_before)) {
    const params = {
      ...base,
      dateLessThan,
      dateGreaterThan: c.not_before ? new Date(c.not_before * 1000) : undefined,
      ipAddress: c.ip ?? undefined,
    };
    url = getSignedUrl({ ...params, url: c.url });
    cookies = getSignedCookies({ ...params, url: c.url });
  } else {
    let resource = c.resource ?? c.url;
    let cookieResource = resource;
    if (resource === c.url) {
      // The URL exactly as the SDK will emit it.
      resource = stripSigning(getSignedUrl({ ...base, url: c.url, dateLessThan }));
    }
    url = getSignedUrl({ ...base, url: c.url, policy: policyJson(resource, c) });
    cookies = getSignedCookies({ ...base, url: c.url, policy: policyJson(cookieResource, c) });
  }
  out.push(JSON.stringify({ id: c.id, sdk: "js", url, cookies }));
}

// Probes: SDK behaviours worth knowing about, reported by check.py.
const now = Number(process.env.COMPAT_NOW || Math.floor(Date.now() / 1000));
const probeExpiry = new Date((now + 3600) * 1000);
// An ECDSA key with the SDK's default algorithm: an ECDSA-SHA1 signature and no Hash-Algorithm.
out.push(JSON.stringify({
  id: "probe-ec-default-hash",
  sdk: "js",
  url: getSignedUrl({ ...keys.ec, url: "https://cdn.example.com/files/probe.txt", dateLessThan: probeExpiry }),
}));
// A custom policy naming the URL as given, while the SDK re-encodes the URL it returns ('@' -> %40).
const raw = "https://cdn.example.com/files/a@b.txt";
out.push(JSON.stringify({
  id: "probe-raw-resource-policy",
  sdk: "js",
  url: getSignedUrl({ ...keys.rsa, url: raw, policy: policyJson(raw, { expires: now + 3600 }) }),
}));
// A custom policy without a Resource: it covers every URL of every distribution trusting the key.
out.push(JSON.stringify({
  id: "probe-no-resource-policy",
  sdk: "js",
  url: getSignedUrl({
    ...keys.rsa,
    url: "https://cdn.example.com/any/where.txt",
    policy: JSON.stringify({ Statement: [{ Condition: { DateLessThan: { "AWS:EpochTime": now + 3600 } } }] }),
  }),
}));
process.stdout.write(out.join("\n") + "\n");
