// Package protocol holds the wire formats shared by the device, the server and the symbol
// uploader: the MAR manifest, the Memfault ELF notes of a core (CBOR), and the device API types.
// It imports nothing of ours.
package protocol
