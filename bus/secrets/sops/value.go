package sops

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// An encrypted value is written
//
//	ENC[AES256_GCM,data:<base64>,iv:<base64>,tag:<base64>,type:<type>]
//
// AES-256-GCM under the document's data key, with a 32-byte IV (sops'
// nonce size; any length is read), the 16-byte tag apart from the data,
// and as additional data the path of keys down to the value, each followed
// by ':' ("stringData:password:"), so that a value moved to another key no
// longer authenticates. The type says how to read the plain text back:
// str, int, float, bool, time, comment, or bytes (older writers).

const (
	encPrefix = "ENC[AES256_GCM,"
	ivSize    = 32
	tagSize   = 16
)

// errAuth: a value whose tag does not verify under its path.
var errAuth = errors.New("does not authenticate")

// additionalData is what a value at path is bound to.
func additionalData(path []string) string {
	return strings.Join(path, ":") + ":"
}

// plainBytes is how sops writes a value's plain text, both to encrypt it
// and into the MAC: floats as shortest decimals without exponent, booleans
// as True and False.
func plainBytes(v any) (data []byte, typ string, err error) {
	switch v := v.(type) {
	case string:
		return []byte(v), "str", nil
	case int:
		return []byte(strconv.Itoa(v)), "int", nil
	case float64:
		return []byte(strconv.FormatFloat(v, 'f', -1, 64)), "float", nil
	case bool:
		if v {
			return []byte("True"), "bool", nil
		}
		return []byte("False"), "bool", nil
	case time.Time:
		b, err := v.MarshalText()
		if err != nil {
			return nil, "", fmt.Errorf("a time out of range: %w", err)
		}
		return b, "time", nil
	case *comment:
		return []byte(v.text), "comment", nil
	}
	return nil, "", fmt.Errorf("values of type %T are not supported", v)
}

// seal encrypts a value bound to ad (additionalData of its path, or the
// timestamp for the MAC). An empty string or comment stays empty, as sops
// leaves it.
func seal(key []byte, v any, ad string) (string, error) {
	data, typ, err := plainBytes(v)
	if err != nil {
		return "", err
	}
	if len(data) == 0 && (typ == "str" || typ == "comment") {
		return "", nil
	}
	gcm, err := newGCM(key, ivSize)
	if err != nil {
		return "", err
	}
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return "", fmt.Errorf("random IV: %w", err)
	}
	out := gcm.Seal(nil, iv, data, []byte(ad))
	ct, tag := out[:len(out)-tagSize], out[len(out)-tagSize:]
	b64 := base64.StdEncoding.EncodeToString
	return encPrefix + "data:" + b64(ct) + ",iv:" + b64(iv) + ",tag:" + b64(tag) + ",type:" + typ + "]", nil
}

func newGCM(key []byte, nonceSize int) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return cipher.NewGCMWithNonceSize(block, nonceSize)
}

// encrypted is the parts of an ENC[...] value.
type encrypted struct {
	data, iv, tag []byte
	typ           string
}

// parseEncrypted reads an ENC[...] value. Its errors name the part that is
// wrong, never the text.
func parseEncrypted(s string) (encrypted, error) {
	var e encrypted
	body, ok := strings.CutPrefix(s, encPrefix)
	if !ok || !strings.HasSuffix(body, "]") {
		return e, errors.New("not an ENC[AES256_GCM,...] value")
	}
	fields := strings.Split(strings.TrimSuffix(body, "]"), ",")
	if len(fields) != 4 {
		return e, errors.New("an ENC value has four fields: data, iv, tag, type")
	}
	for i, name := range []string{"data", "iv", "tag", "type"} {
		v, ok := strings.CutPrefix(fields[i], name+":")
		if !ok {
			return e, fmt.Errorf("field %d of an ENC value must be %s", i+1, name)
		}
		if name == "type" {
			e.typ = v
			continue
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return e, fmt.Errorf("bad base64 in the %s of an ENC value", name)
		}
		switch name {
		case "data":
			e.data = b
		case "iv":
			e.iv = b
		case "tag":
			e.tag = b
		}
	}
	if len(e.iv) == 0 || len(e.tag) != tagSize {
		return e, errors.New("an ENC value needs an IV and a 16-byte tag")
	}
	return e, nil
}

// open decrypts an ENC[...] value bound to ad and returns it typed: a
// string, int, float64, bool, time.Time or *comment. An empty string is
// read as itself, as sops writes empty values unencrypted. Errors never
// hold the plain text.
func open(key []byte, s string, ad string) (any, error) {
	if s == "" {
		return "", nil
	}
	e, err := parseEncrypted(s)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key, len(e.iv))
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, e.iv, append(e.data, e.tag...), []byte(ad))
	if err != nil {
		return nil, errAuth
	}
	text := string(plain)
	switch e.typ {
	case "str", "bytes":
		return text, nil
	case "int":
		if n, err := strconv.Atoi(text); err == nil {
			return n, nil
		}
	case "float":
		if f, err := strconv.ParseFloat(text, 64); err == nil {
			return f, nil
		}
	case "bool":
		if b, err := strconv.ParseBool(text); err == nil {
			return b, nil
		}
	case "time":
		var t time.Time
		if err := t.UnmarshalText(plain); err == nil {
			return t, nil
		}
	case "comment":
		return &comment{text: text}, nil
	default:
		return nil, fmt.Errorf("unknown value type %q", e.typ)
	}
	return nil, fmt.Errorf("the plain text is not of its type %s", e.typ)
}
