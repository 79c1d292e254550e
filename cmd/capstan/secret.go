//go:build !nodeonly

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/capstan-io/capstan/bus/secrets/sops"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/schema"
)

func secretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "secret",
		Aliases: []string{"secrets"},
		Short:   "Write Secrets that can be committed (SOPS and age); rotate the key that encrypts them at rest",
	}
	cmd.AddCommand(secretEncryptCmd(g), secretRotateKeyCmd(g)) // secrets_atrest.go
	return cmd
}

func secretEncryptCmd(g *globals) *cobra.Command {
	var recipients, literals []string
	var file, ns, typ string
	var inPlace bool
	cmd := &cobra.Command{
		Use:   "encrypt --age RECIPIENT (-f FILE | --from-literal KEY=VALUE...) [NAME]",
		Short: "Encrypt a Secret manifest with SOPS for age recipients",
		Long: `Encrypt a Secret with SOPS for one or more age recipients, the way
sops --encrypt --age RECIPIENT --encrypted-regex '^(data|stringData)$' does:
the values of data and stringData are encrypted, apiVersion, kind and
metadata stay readable. The result can be committed; the control plane
decrypts it with --sops-age-key-file, only into the assignments of the
nodes that run pods using it.

Either encrypt a Secret manifest (-f FILE; -i rewrites the file), or build
one from literals (--from-literal KEY=VALUE, repeated) named NAME. The
encrypted manifest goes to stdout.`,
		Example: `  capstan secret encrypt --age age1... --from-literal password=s3cret db > db.secret.yaml
  capstan secret encrypt --age age1... -f db.secret.yaml -i`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(recipients) == 0 {
				if env := os.Getenv("SOPS_AGE_RECIPIENTS"); env != "" {
					recipients = strings.Split(env, ",")
				} else {
					return exitError{code: 1, msg: "error: give --age RECIPIENT (or set SOPS_AGE_RECIPIENTS)"}
				}
			}
			var name string
			if len(args) == 1 {
				name = args[0]
			}
			var plain []byte
			switch {
			case file != "" && len(literals) > 0:
				return exitError{code: 1, msg: "error: give -f FILE or --from-literal, not both"}
			case file != "":
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				if name != "" {
					if got, _ := secretName(b); got != name {
						return exitError{code: 1, msg: fmt.Sprintf("error: %s declares Secret %q, not %q", file, got, name)}
					}
				}
				plain = b
			case len(literals) > 0:
				if name == "" {
					return exitError{code: 1, msg: "error: give the Secret's NAME"}
				}
				b, err := literalSecret(name, ns, typ, literals)
				if err != nil {
					return exitError{code: 1, msg: "error: " + err.Error()}
				}
				plain = b
			default:
				return exitError{code: 1, msg: "error: give -f FILE or --from-literal KEY=VALUE"}
			}
			if inPlace && file == "" {
				return exitError{code: 1, msg: "error: -i needs -f FILE"}
			}
			if bytesHasSops(plain) {
				return exitError{code: 1, msg: "error: the manifest is already encrypted"}
			}
			enc, err := sops.EncryptSecret(plain, recipients)
			if err != nil {
				return exitError{code: 1, msg: "error: " + err.Error()}
			}
			// What we write must be what the control plane accepts.
			path := "secret.yaml"
			if file != "" {
				path = filepath.Base(file)
			}
			if _, err := sops.LoadSecrets(schema.Load, nil)([]manifests.File{{Path: path, Data: enc}}); err != nil {
				return exitError{code: 1, msg: "error: the encrypted manifest is not valid:\n" + err.Error()}
			}
			if inPlace {
				info, err := os.Stat(file)
				if err != nil {
					return err
				}
				return os.WriteFile(file, enc, info.Mode().Perm())
			}
			_, err = g.stdout.Write(enc)
			return err
		},
	}
	cmd.Flags().StringSliceVar(&recipients, "age", nil, "age recipient (age1...) to encrypt for; repeat or comma-separate for several (env SOPS_AGE_RECIPIENTS)")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "Secret manifest to encrypt")
	cmd.Flags().StringArrayVar(&literals, "from-literal", nil, "KEY=VALUE to put in the Secret (repeat)")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace of a Secret built from literals")
	cmd.Flags().StringVar(&typ, "type", "Opaque", "type of a Secret built from literals")
	cmd.Flags().BoolVarP(&inPlace, "in-place", "i", false, "rewrite FILE encrypted instead of printing")
	return cmd
}

// literalSecret builds a Secret manifest with stringData from KEY=VALUE
// pairs, keys sorted.
func literalSecret(name, ns, typ string, literals []string) ([]byte, error) {
	data := map[string]string{}
	for _, l := range literals {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--from-literal %q: want KEY=VALUE", l)
		}
		if _, dup := data[k]; dup {
			return nil, fmt.Errorf("--from-literal: key %q given twice", k)
		}
		data[k] = v
	}
	meta := &yamlv3.Node{Kind: yamlv3.MappingNode}
	addPair(meta, "name", name)
	if ns != "" {
		addPair(meta, "namespace", ns)
	}
	sd := &yamlv3.Node{Kind: yamlv3.MappingNode}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		addPair(sd, k, data[k])
	}
	doc := &yamlv3.Node{Kind: yamlv3.MappingNode}
	addPair(doc, "apiVersion", "v1")
	addPair(doc, "kind", "Secret")
	doc.Content = append(doc.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: "metadata"}, meta)
	addPair(doc, "type", typ)
	doc.Content = append(doc.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: "stringData"}, sd)
	return yamlv3.Marshal(doc)
}

func addPair(m *yamlv3.Node, k, v string) {
	val := &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: v, Tag: "!!str"}
	m.Content = append(m.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: k}, val)
}

// secretName reads metadata.name of a one-document Secret manifest.
func secretName(b []byte) (string, error) {
	var s struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	if err := yamlv3.Unmarshal(b, &s); err != nil {
		return "", err
	}
	if s.Kind != "Secret" {
		return "", errors.New("not a Secret")
	}
	return s.Metadata.Name, nil
}

func bytesHasSops(b []byte) bool {
	var m map[string]any
	if yamlv3.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok := m["sops"]
	return ok
}
