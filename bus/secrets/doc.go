// Package secrets is the one home of Secret values in Capstan:
//
//   - sops: Secrets committed encrypted with SOPS (age recipients) are
//     validated with their ciphertext masked and decrypted only into the
//     assignments of the pods that use them (sops.Decrypter, behind the
//     Decrypter interface the control plane and the sources take);
//   - this package: an assignment's Secrets are sealed with age to its
//     node's public key (Seal) and opened only by that node (Open), whose
//     key LoadIdentity keeps in its data dir;
//   - atrest: the values in the objects bucket are encrypted with AES-GCM
//     under a key in the server's data dir, and revealed to admins only.
//
// It owns: every encryption of a Secret value. It does not own: which pod
// gets which Secret (the assignments controller decides). This package
// imports manifests only, so the node daemon links neither the SOPS codec
// nor the at-rest store.
package secrets
