package sops

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"filippo.io/age/plugin"
)

// The data key (32 random bytes, the AES-256 key of every value) is kept
// in the document once per age recipient: age-encrypted to it and armored,
// in the enc field of the sops.age list. The identity, recipient and
// plugin syntax is the one sops accepts for age.

// pluginUI is what age plugins may use to talk to a person: the terminal,
// when there is one, as sops does.
var pluginUI = plugin.NewTerminalUI(
	func(format string, v ...any) { fmt.Fprintf(os.Stderr, "age: "+format+"\n", v...) },
	func(format string, v ...any) { fmt.Fprintf(os.Stderr, "age: warning: "+format+"\n", v...) },
)

// ParseIdentities reads age identities, one a line, as in an age key file:
// X25519 (AGE-SECRET-KEY-1...), post-quantum hybrid (AGE-SECRET-KEY-PQ-1...)
// or plugin (AGE-PLUGIN-...) ones; blank lines and lines starting with #
// are skipped. Errors give the line number, never the line: it is a key.
func ParseIdentities(text string) ([]age.Identity, error) {
	var ids []age.Identity
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var id age.Identity
		var err error
		switch {
		case strings.HasPrefix(line, "AGE-PLUGIN-"):
			id, err = plugin.NewIdentity(line, pluginUI)
		case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
			id, err = age.ParseHybridIdentity(line)
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			id, err = age.ParseX25519Identity(line)
		default:
			return nil, fmt.Errorf("line %d: unknown identity type", n)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ids, nil
}

// parseRecipient reads an age recipient: X25519 (age1...), post-quantum
// hybrid (age1pq1...), plugin (age1name1...) or SSH (ssh-ed25519 ...,
// ssh-rsa ...).
func parseRecipient(s string) (age.Recipient, error) {
	switch {
	case strings.HasPrefix(s, "age1pq1"):
		return age.ParseHybridRecipient(s)
	case strings.HasPrefix(s, "age1") && strings.Count(s, "1") > 1:
		// Bech32 data never holds a '1': a second one ends a plugin name.
		return plugin.NewRecipient(s, pluginUI)
	case strings.HasPrefix(s, "age1"):
		return age.ParseX25519Recipient(s)
	case strings.HasPrefix(s, "ssh-"):
		return agessh.ParseRecipient(s)
	}
	return nil, fmt.Errorf("unknown recipient type %q", s)
}

// wrapKey age-encrypts the data key to r, armored.
func wrapKey(dataKey []byte, r age.Recipient) (string, error) {
	var b bytes.Buffer
	aw := armor.NewWriter(&b)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(dataKey); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := aw.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// unwrapKey recovers the data key from the first age entry one of ids
// opens.
func unwrapKey(keys []ageKey, ids []age.Identity) ([]byte, error) {
	for _, k := range keys {
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(k.enc)), ids...)
		if err != nil {
			continue
		}
		key, err := io.ReadAll(io.LimitReader(r, 2*dataKeySize))
		if err != nil || len(key) != dataKeySize {
			continue
		}
		return key, nil
	}
	recipients := make([]string, 0, len(keys))
	for _, k := range keys {
		recipients = append(recipients, k.recipient)
	}
	if len(recipients) == 0 {
		recipients = []string{"none of age"}
	}
	return nil, &NoKeyError{Recipients: recipients}
}

// NoKeyError: none of the identities given opens the document's data key.
type NoKeyError struct {
	Recipients []string // the document's age recipients
}

func (e *NoKeyError) Error() string {
	return fmt.Sprintf("no age identity given can decrypt the data key (recipients %s)", strings.Join(e.Recipients, ", "))
}
