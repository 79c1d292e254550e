package sops

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// metadataKey is the top-level key of the sops mapping.
const metadataKey = "sops"

// metadata is what this package reads from and writes to the sops mapping:
//
//	sops:
//	    age:
//	        - enc: |            # the data key, age-encrypted, armored
//	          recipient: age1...
//	    encrypted_regex: ^(data|stringData)$   # or another rule
//	    lastmodified: "2006-01-02T15:04:05Z"
//	    mac: ENC[AES256_GCM,...,type:str]      # bound to lastmodified
//	    mac_only_encrypted: true               # when set
//	    version: 3.13.3
//
// The keys of other services (pgp, kms, gcp_kms, azure_kv, hc_vault,
// hckms) are ignored: only age can be used here.
type metadata struct {
	age          []ageKey
	rules        Rules
	lastModified string
	mac          string
	version      string
}

// ageKey is one entry of the age list.
type ageKey struct {
	recipient, enc string
}

// parseMetadata reads the sops mapping. Its values are loosely typed as
// sops reads them: mac_only_encrypted may be a string or a number too.
func parseMetadata(v any) (metadata, error) {
	var md metadata
	m, ok := v.(mapping)
	if !ok {
		return md, errors.New("the sops key does not hold a mapping")
	}
	for _, e := range m {
		if e.comment != nil {
			continue
		}
		var err error
		switch e.key {
		case "age":
			md.age, err = parseAgeKeys(e.value)
		case "key_groups":
			// Written by sops for two key groups or more: the data key is
			// then split with Shamir's secret sharing among them.
			groups, ok := e.value.(sequence)
			switch {
			case !ok:
				err = errors.New("not a list")
			case len(groups) > 1:
				err = fmt.Errorf("%d groups: Shamir secret sharing of the data key is not supported", len(groups))
			case len(groups) == 1:
				group, ok := groups[0].(mapping)
				if !ok {
					err = errors.New("a group is not a mapping")
				} else if ages, found := group.lookup("age"); found {
					md.age, err = parseAgeKeys(ages)
				}
			}
		case "lastmodified":
			// sops writes it quoted; a YAML timestamp left bare is a time.
			if t, ok := e.value.(time.Time); ok {
				md.lastModified = t.Format(time.RFC3339Nano)
			} else {
				md.lastModified, err = metaString(e.value)
			}
		case "mac":
			md.mac, err = metaString(e.value)
		case "unencrypted_suffix":
			md.rules.UnencryptedSuffix, err = metaString(e.value)
		case "encrypted_suffix":
			md.rules.EncryptedSuffix, err = metaString(e.value)
		case "unencrypted_regex":
			md.rules.UnencryptedRegex, err = metaString(e.value)
		case "encrypted_regex":
			md.rules.EncryptedRegex, err = metaString(e.value)
		case "unencrypted_comment_regex", "encrypted_comment_regex":
			if s, _ := metaString(e.value); s != "" {
				err = errors.New("rules on comments are not supported")
			}
		case "mac_only_encrypted":
			md.rules.MACOnlyEncrypted, err = metaBool(e.value)
		}
		if err != nil {
			return md, fmt.Errorf("%s: %w", e.key, err)
		}
	}
	if md.mac == "" {
		return md, errors.New("no mac")
	}
	return md, nil
}

func parseAgeKeys(v any) ([]ageKey, error) {
	list, ok := v.(sequence)
	if !ok {
		return nil, errors.New("not a list")
	}
	var keys []ageKey
	for _, item := range list {
		if _, ok := item.(*comment); ok {
			continue
		}
		m, ok := item.(mapping)
		if !ok {
			return nil, errors.New("an entry is not a mapping")
		}
		var k ageKey
		for _, field := range []struct {
			name string
			to   *string
		}{{"recipient", &k.recipient}, {"enc", &k.enc}} {
			v, _ := m.lookup(field.name)
			s, err := metaString(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field.name, err)
			}
			*field.to = s
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func metaString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("a %T where a string is expected", v)
}

func metaBool(v any) (bool, error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case nil:
		return false, nil
	case int:
		return v != 0, nil
	case string:
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("%q is not a boolean", v)
		}
		return b, nil
	}
	return false, fmt.Errorf("a %T where a boolean is expected", v)
}

// mapping is the sops mapping as sops writes it: keys in alphabetical
// order, the rules and mac_only_encrypted only when set.
func (md metadata) mapping() mapping {
	var m mapping
	ages := sequence{}
	for _, k := range md.age {
		ages = append(ages, mapping{{key: "enc", value: k.enc}, {key: "recipient", value: k.recipient}})
	}
	m = append(m, entry{key: "age", value: ages})
	for _, kv := range []struct{ key, value string }{
		{"lastmodified", md.lastModified},
		{"mac", md.mac},
		{"version", md.version},
		{"unencrypted_suffix", md.rules.UnencryptedSuffix},
		{"encrypted_suffix", md.rules.EncryptedSuffix},
		{"unencrypted_regex", md.rules.UnencryptedRegex},
		{"encrypted_regex", md.rules.EncryptedRegex},
	} {
		if kv.value != "" {
			m = append(m, entry{key: kv.key, value: kv.value})
		}
	}
	if md.rules.MACOnlyEncrypted {
		m = append(m, entry{key: "mac_only_encrypted", value: true})
	}
	sort.SliceStable(m, func(i, j int) bool { return m[i].key < m[j].key })
	return m
}
