// Package secrets seals webhook secrets for storage with AES-256-GCM, under
// a key the operator holds, and opens them with that key or a previous one,
// so that the key can be rotated.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// prefix marks a sealed value: "sealed:v1:<key id>:<base64 nonce+ciphertext>".
const prefix = "sealed:v1:"

// ErrNoKey is returned when a sealed value is read without its key.
var ErrNoKey = errors.New("secret is sealed with a key that is not configured")

// Keyring seals with its current key and opens with any of its keys. A nil
// Keyring stores secrets as they are.
type Keyring struct {
	current *key
	byID    map[string]*key
}

type key struct {
	id   string
	aead cipher.AEAD
}

// ParseKey reads a 32-byte key written as 64 hex digits or as base64.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	encodings := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding}
	for _, enc := range encodings {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("a key is 32 random bytes, written as 64 hex digits or in base64 " +
		"(openssl rand -hex 32)")
}

// NewKeyring returns a keyring that seals with current and opens with
// current or any of previous.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{byID: map[string]*key{}}
	for i, raw := range append([][]byte{current}, previous...) {
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		sum := sha256.Sum256(raw)
		kk := &key{id: hex.EncodeToString(sum[:4]), aead: aead}
		if i == 0 {
			k.current = kk
		}
		k.byID[kk.id] = kk
	}
	return k, nil
}

// Seal returns the stored form of secret, bound to context (the webhook's
// id), so that a sealed value copied to another row does not open.
func (k *Keyring) Seal(secret, context string) (string, error) {
	if k == nil || secret == "" {
		return secret, nil
	}
	nonce := make([]byte, k.current.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := k.current.aead.Seal(nonce, nonce, []byte(secret), []byte(context))
	return prefix + k.current.id + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// Open returns the secret a stored value holds. A value stored before a key
// was configured is returned as it is.
func (k *Keyring) Open(stored, context string) (string, error) {
	rest, ok := strings.CutPrefix(stored, prefix)
	if !ok {
		return stored, nil
	}
	id, data, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("open secret: malformed sealed value")
	}
	if k == nil || k.byID[id] == nil {
		return "", fmt.Errorf("open secret (key %s): %w", id, ErrNoKey)
	}
	raw, err := base64.RawStdEncoding.DecodeString(data)
	kk := k.byID[id]
	if err != nil || len(raw) < kk.aead.NonceSize() {
		return "", errors.New("open secret: malformed sealed value")
	}
	n := kk.aead.NonceSize()
	plain, err := kk.aead.Open(nil, raw[:n], raw[n:], []byte(context))
	if err != nil {
		return "", fmt.Errorf("open secret (key %s): %w", id, err)
	}
	return string(plain), nil
}

// Current reports whether a stored value is sealed with the current key, or
// needs no sealing (it is empty, or there is no keyring).
func (k *Keyring) Current(stored string) bool {
	if k == nil || stored == "" {
		return true
	}
	return strings.HasPrefix(stored, prefix+k.current.id+":")
}
