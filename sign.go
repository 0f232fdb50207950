package notifier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// SignatureHeader is the request header that carries a delivery's signature.
const SignatureHeader = "X-Barfinex-Signature"

// Sign returns the signature of body under secret: the lower-case hex
// HMAC-SHA256 of the exact body bytes, with no prefix.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature reports, in constant time, whether signature is the
// signature of body under secret.
func VerifySignature(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}
