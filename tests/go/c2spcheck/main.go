// c2spcheck verifies auditledger checkpoints and proofs with the Go
// reference packages only (golang.org/x/mod/sumdb/note and tlog): no code
// of the ledger's.  It exits 0 and prints "ok ..." when the check passes,
// 1 with the reason otherwise.  tests/test_c2sp_go.py builds and runs it.
//
//	c2spcheck vkeys GENESIS
//	c2spcheck [-witnesses WKEYS -wquorum N] checkpoint  VKEYS QUORUM NOTE
//	c2spcheck inclusion   VKEYS QUORUM TLOGPROOF ENTRY
//	c2spcheck consistency VKEYS QUORUM OLDNOTE NEWNOTE PROOF
//
// VKEYS holds one C2SP verifier key per line; PROOF one base64 hash per line.
// "vkeys" prints the validators' verifier keys from a genesis file alone
// (key name "<chain>.auditledger/validator-<i>", note.NewEd25519VerifierKey)
// and the quorum 2f+1 on stderr: the keys of checkpoints until governance
// changes the validator set.
//
// With -witnesses WKEYS -wquorum N before the command, every note must also
// carry C2SP tlog-cosignature/v1 cosignatures (Ed25519, key type 0x04) of N
// distinct witnesses among WKEYS (one vkey per line).  x/mod 0.7.0 has no
// verifier for type 0x04, so cosigVerifier implements note.Verifier for it
// with crypto/ed25519 over the spec's message; note.Open does the rest.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func readFile(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	return b
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "FAIL:", err)
	os.Exit(1)
}

// cosigVerifier checks C2SP tlog-cosignature/v1 Ed25519 cosignatures: the
// signature is an 8-byte big-endian timestamp then an Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" followed by the note text.
type cosigVerifier struct {
	name  string
	hash  uint32
	key   ed25519.PublicKey
	times *[]uint64 // timestamps of the cosignatures that verified
}

func (v cosigVerifier) Name() string    { return v.name }
func (v cosigVerifier) KeyHash() uint32 { return v.hash }

func (v cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	if ts > math.MaxInt64 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), msg...)
	if !ed25519.Verify(v.key, signed, sig[8:]) {
		return false
	}
	*v.times = append(*v.times, ts)
	return true
}

// newCosigVerifier parses a witness vkey "name+<8 hex id>+base64(0x04 || key)"
// and checks its id: SHA-256(name || "\n" || 0x04 || key)[:4].
func newCosigVerifier(vkey string) (cosigVerifier, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	id, b64, ok2 := strings.Cut(rest, "+")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if !ok1 || !ok2 || len(id) != 8 || err != nil || name == "" {
		return cosigVerifier{}, fmt.Errorf("witness key %q is not name+id+base64", vkey)
	}
	if len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return cosigVerifier{}, fmt.Errorf("witness key %q is not a type 0x04 Ed25519 key", name)
	}
	sum := sha256.Sum256(append([]byte(name+"\n"), raw...))
	if hex.EncodeToString(sum[:4]) != id {
		return cosigVerifier{}, fmt.Errorf("witness key %q: id %s does not match its name and key", name, id)
	}
	return cosigVerifier{name, binary.BigEndian.Uint32(sum[:4]), ed25519.PublicKey(raw[1:]), new([]uint64)}, nil
}

func keyLines(path string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(readFile(path))), "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// Set by -witnesses and -wquorum.
var (
	witnessKeys   = flag.String("witnesses", "", "file of trusted witness vkeys (type 0x04), one per line")
	witnessQuorum = flag.Int("wquorum", 0, "distinct witness cosignatures required")
)

// openQuorum opens a signed note with the validators' keys and requires
// signatures from at least quorum distinct keys (note.Open has no threshold),
// and cosignatures of -wquorum distinct witnesses among -witnesses.
func openQuorum(vkeysPath string, quorum int, msg []byte) (*checkpoint, error) {
	var verifiers []note.Verifier
	validators := map[string]bool{}
	for _, line := range keyLines(vkeysPath) {
		v, err := note.NewVerifier(line)
		if err != nil {
			return nil, fmt.Errorf("verifier key %q: %v", line, err)
		}
		verifiers = append(verifiers, v)
		validators[fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())] = true
	}
	var witnesses []cosigVerifier
	if *witnessKeys != "" {
		for _, line := range keyLines(*witnessKeys) {
			w, err := newCosigVerifier(line)
			if err != nil {
				return nil, err
			}
			witnesses = append(witnesses, w)
			verifiers = append(verifiers, w)
		}
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		return nil, fmt.Errorf("note.Open: %v", err)
	}
	distinct := map[string]bool{}
	for _, s := range n.Sigs {
		if id := fmt.Sprintf("%s+%08x", s.Name, s.Hash); validators[id] {
			distinct[id] = true
		}
	}
	if len(distinct) < quorum {
		return nil, fmt.Errorf("%d validator signatures verify, %d needed", len(distinct), quorum)
	}
	cosigned := 0
	for _, w := range witnesses {
		if len(*w.times) > 0 {
			cosigned++
			fmt.Printf("witness %s cosigned at %d\n", w.name, (*w.times)[len(*w.times)-1])
		}
	}
	if cosigned < *witnessQuorum {
		return nil, fmt.Errorf("%d witness cosignatures verify, %d needed", cosigned, *witnessQuorum)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return nil, errors.New("checkpoint text is not three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return nil, fmt.Errorf("bad tree size %q", lines[1])
	}
	root, err := parseHash(lines[2])
	if err != nil {
		return nil, err
	}
	return &checkpoint{lines[0], size, root}, nil
}

func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}

func parseHashes(lines []string) ([]tlog.Hash, error) {
	var out []tlog.Hash
	for _, l := range lines {
		if l == "" {
			continue
		}
		h, err := parseHash(l)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// parseTlogProof reads c2sp.org/tlog-proof@v1: header, optional extra,
// index, path lines, an empty line, then the checkpoint note.
func parseTlogProof(data []byte) (int64, []tlog.Hash, []byte, error) {
	s := string(data)
	i := strings.Index(s, "\n\n")
	if i < 0 {
		return 0, nil, nil, errors.New("no empty line before the checkpoint")
	}
	lines := strings.Split(s[:i], "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return 0, nil, nil, fmt.Errorf("bad header %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return 0, nil, nil, errors.New("no index line")
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "index "), 10, 64)
	if err != nil {
		return 0, nil, nil, err
	}
	path, err := parseHashes(lines[1:])
	if err != nil {
		return 0, nil, nil, err
	}
	return index, path, []byte(s[i+2:]), nil
}

// genesisVkeys: the verifier keys of the genesis validators, one per line.
func genesisVkeys(path string) {
	var doc struct {
		Chain      string `json:"chain"`
		Validators []struct {
			Pubkey string `json:"pubkey"`
		} `json:"validators"`
	}
	if err := json.Unmarshal(readFile(path), &doc); err != nil {
		fail(fmt.Errorf("genesis: %v", err))
	}
	for i, v := range doc.Validators {
		pub, err := hex.DecodeString(v.Pubkey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			fail(fmt.Errorf("genesis validator %d: pubkey is not 32 bytes of hex", i))
		}
		name := fmt.Sprintf("%s.auditledger/validator-%d", doc.Chain, i)
		vkey, err := note.NewEd25519VerifierKey(name, ed25519.PublicKey(pub))
		if err != nil {
			fail(err)
		}
		fmt.Println(vkey)
	}
	fmt.Fprintf(os.Stderr, "quorum %d\n", 2*len(doc.Validators)/3+1)
}

func main() {
	flag.Parse()
	args := append([]string{os.Args[0]}, flag.Args()...)
	if len(args) == 3 && args[1] == "vkeys" {
		genesisVkeys(args[2])
		return
	}
	if len(args) < 5 {
		fail(errors.New("usage: c2spcheck [-witnesses WKEYS -wquorum N] checkpoint|inclusion|consistency VKEYS QUORUM ..."))
	}
	quorum, err := strconv.Atoi(args[3])
	if err != nil {
		fail(err)
	}
	vkeys := args[2]
	switch args[1] {
	case "checkpoint":
		c, err := openQuorum(vkeys, quorum, readFile(args[4]))
		if err != nil {
			fail(err)
		}
		fmt.Printf("ok checkpoint %s size %d\n", c.origin, c.size)
	case "inclusion":
		index, path, msg, err := parseTlogProof(readFile(args[4]))
		if err != nil {
			fail(fmt.Errorf("tlog-proof: %v", err))
		}
		c, err := openQuorum(vkeys, quorum, msg)
		if err != nil {
			fail(err)
		}
		leaf := tlog.RecordHash(readFile(args[5]))
		if err := tlog.CheckRecord(tlog.RecordProof(path), c.size, c.root, index, leaf); err != nil {
			fail(fmt.Errorf("tlog.CheckRecord: %v", err))
		}
		fmt.Printf("ok inclusion index %d in size %d\n", index, c.size)
	case "consistency":
		old, err := openQuorum(vkeys, quorum, readFile(args[4]))
		if err != nil {
			fail(fmt.Errorf("old: %v", err))
		}
		cur, err := openQuorum(vkeys, quorum, readFile(args[5]))
		if err != nil {
			fail(fmt.Errorf("new: %v", err))
		}
		proof, err := parseHashes(strings.Split(string(readFile(args[6])), "\n"))
		if err != nil {
			fail(err)
		}
		if err := tlog.CheckTree(tlog.TreeProof(proof), cur.size, cur.root, old.size, old.root); err != nil {
			fail(fmt.Errorf("tlog.CheckTree: %v", err))
		}
		fmt.Printf("ok consistency %d -> %d\n", old.size, cur.size)
	default:
		fail(fmt.Errorf("unknown command %q", args[1]))
	}
}
