// Keyhole method binding for CloudFront (runtime cloudfront-js-2.0, viewer-request event).
//
// CloudFront has already checked the signed URL against the trusted key group when this runs;
// this function binds methods to paths, as Keyhole's own edge does:
//   GET, HEAD      /files/{fileId}    -> rewritten to the object key /uploads/{fileId}
//   PUT            /uploads/{fileId}  -> a whole-file PUT (no uploadId) gets `If-None-Match: *`
//                                        and loses any `If-Match`, so S3 stores it only if the
//                                        object is not there yet: write-once, as Keyhole's edge
//                                        (S3 answers 412 PreconditionFailed where the edge says
//                                        409); a part PUT (uploadId) passes unchanged
//   OPTIONS        /uploads/{fileId}  -> passed on unchanged (CORS preflight)
//   another method on either path     -> 405 with Allow
//   any other path                    -> 403, as CloudFront answers a link it refuses
// The query string (signature, partNumber, uploadId) is never touched, nor anything else. The
// bucket policy refuses a whole-file PUT from the distribution without `If-None-Match`, so an
// overwrite stays impossible if this function is ever detached.
// A file id is one path segment that does not start with a dot, like Keyhole's object keys.

var FILES = /^\/files\/([^\/.][^\/]*)$/;
var UPLOADS = /^\/uploads\/([^\/.][^\/]*)$/;

function refuse(statusCode, statusDescription, code, message, allow) {
  var headers = {
    'content-type': { value: 'application/xml' },
    'cache-control': { value: 'no-store' }
  };
  if (allow) {
    headers.allow = { value: allow };
  }
  return {
    statusCode: statusCode,
    statusDescription: statusDescription,
    headers: headers,
    body: {
      encoding: 'text',
      data: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>' + code +
        '</Code><Message>' + message + '</Message></Error>'
    }
  };
}

function handler(event) {
  var request = event.request;
  var method = request.method;
  var download = FILES.exec(request.uri);

  if (download) {
    if (method === 'GET' || method === 'HEAD') {
      request.uri = '/uploads/' + download[1];
      return request;
    }
    return refuse(405, 'Method Not Allowed', 'MethodNotAllowed',
      'Download links accept only GET and HEAD.', 'GET, HEAD');
  }

  if (UPLOADS.test(request.uri)) {
    if (method === 'PUT' && !request.querystring.uploadId) {
      // S3's conditional write: UploadPart takes no conditional headers, CompleteMultipartUpload
      // is the Lambda's (with the same header), and a whole-file PUT creates, never replaces.
      request.headers['if-none-match'] = { value: '*' };
      delete request.headers['if-match'];
      return request;
    }
    if (method === 'PUT' || method === 'OPTIONS') {
      return request;
    }
    return refuse(405, 'Method Not Allowed', 'MethodNotAllowed',
      'Upload links accept only PUT.', 'PUT, OPTIONS');
  }

  return refuse(403, 'Forbidden', 'AccessDenied', 'Access denied');
}
