// Checks a delivery's signature with the verification function receivers are
// given, unchanged. usage: node verify.js SECRET BODY_FILE SIGNATURE
const crypto = require('crypto');
const fs = require('fs');

function verifySignature(secret, body, signature) {
  const expected = crypto
    .createHmac('sha256', secret)
    .update(body, 'utf8')
    .digest('hex');
  return crypto.timingSafeEqual(
    Buffer.from(expected),
    Buffer.from(signature)
  );
}

const [secret, file, signature] = process.argv.slice(2);
const body = fs.readFileSync(file, 'utf8');
console.log(verifySignature(secret, body, signature) ? 'valid' : 'invalid');
