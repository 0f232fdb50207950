package secrets_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier/secrets"
)

func TestKeyring(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old, err := secrets.NewKeyring(oldKey)
	require.NoError(t, err)
	sealed, err := old.Seal("whsec-Ü-🔑", "wh_a")
	require.NoError(t, err)
	require.NotContains(t, sealed, "whsec")
	require.True(t, strings.HasPrefix(sealed, "sealed:v1:"))

	got, err := old.Open(sealed, "wh_a")
	require.NoError(t, err)
	require.Equal(t, "whsec-Ü-🔑", got)
	_, err = old.Open(sealed, "wh_b")
	require.Error(t, err, "a sealed value is bound to its webhook")

	rotated, err := secrets.NewKeyring(newKey, oldKey)
	require.NoError(t, err)
	require.False(t, rotated.Current(sealed))
	got, err = rotated.Open(sealed, "wh_a")
	require.NoError(t, err, "a previous key still opens")
	require.Equal(t, "whsec-Ü-🔑", got)
	resealed, err := rotated.Seal(got, "wh_a")
	require.NoError(t, err)
	require.True(t, rotated.Current(resealed))

	onlyNew, err := secrets.NewKeyring(newKey)
	require.NoError(t, err)
	_, err = onlyNew.Open(sealed, "wh_a")
	require.ErrorIs(t, err, secrets.ErrNoKey)
	var none *secrets.Keyring
	_, err = none.Open(sealed, "wh_a")
	require.ErrorIs(t, err, secrets.ErrNoKey)

	plain, err := old.Open("stored-before-a-key", "wh_a")
	require.NoError(t, err)
	require.Equal(t, "stored-before-a-key", plain)
}

func TestParseKey(t *testing.T) {
	hexKey := strings.Repeat("ab", 32)
	k, err := secrets.ParseKey(hexKey)
	require.NoError(t, err)
	require.Len(t, k, 32)
	_, err = secrets.ParseKey("short")
	require.Error(t, err)
	_, err = secrets.ParseKey("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=")
	require.NoError(t, err)
}
