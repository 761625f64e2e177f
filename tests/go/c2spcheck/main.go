// c2spcheck verifies auditledger checkpoints and proofs with the Go
// reference packages only (golang.org/x/mod/sumdb/note and tlog): no code
// of the ledger's.  It exits 0 and prints "ok ..." when the check passes,
// 1 with the reason otherwise.  tests/test_c2sp_go.py builds and runs it.
//
//	c2spcheck checkpoint  VKEYS QUORUM NOTE
//	c2spcheck inclusion   VKEYS QUORUM TLOGPROOF ENTRY
//	c2spcheck consistency VKEYS QUORUM OLDNOTE NEWNOTE PROOF
//
// VKEYS holds one C2SP verifier key per line; PROOF one base64 hash per line.
package main

import (
	"encoding/base64"
	"errors"
	"fmt"
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

// openQuorum opens a signed note with the validators' keys and requires
// signatures from at least quorum distinct keys (note.Open has no threshold).
func openQuorum(vkeysPath string, quorum int, msg []byte) (*checkpoint, error) {
	var verifiers []note.Verifier
	for _, line := range strings.Split(strings.TrimSpace(string(readFile(vkeysPath))), "\n") {
		v, err := note.NewVerifier(strings.TrimSpace(line))
		if err != nil {
			return nil, fmt.Errorf("verifier key %q: %v", line, err)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		return nil, fmt.Errorf("note.Open: %v", err)
	}
	distinct := map[string]bool{}
	for _, s := range n.Sigs {
		distinct[fmt.Sprintf("%s+%08x", s.Name, s.Hash)] = true
	}
	if len(distinct) < quorum {
		return nil, fmt.Errorf("%d validator signatures verify, %d needed", len(distinct), quorum)
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

func main() {
	if len(os.Args) < 5 {
		fail(errors.New("usage: c2spcheck checkpoint|inclusion|consistency VKEYS QUORUM ..."))
	}
	quorum, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fail(err)
	}
	vkeys := os.Args[2]
	switch os.Args[1] {
	case "checkpoint":
		c, err := openQuorum(vkeys, quorum, readFile(os.Args[4]))
		if err != nil {
			fail(err)
		}
		fmt.Printf("ok checkpoint %s size %d\n", c.origin, c.size)
	case "inclusion":
		index, path, msg, err := parseTlogProof(readFile(os.Args[4]))
		if err != nil {
			fail(fmt.Errorf("tlog-proof: %v", err))
		}
		c, err := openQuorum(vkeys, quorum, msg)
		if err != nil {
			fail(err)
		}
		leaf := tlog.RecordHash(readFile(os.Args[5]))
		if err := tlog.CheckRecord(tlog.RecordProof(path), c.size, c.root, index, leaf); err != nil {
			fail(fmt.Errorf("tlog.CheckRecord: %v", err))
		}
		fmt.Printf("ok inclusion index %d in size %d\n", index, c.size)
	case "consistency":
		old, err := openQuorum(vkeys, quorum, readFile(os.Args[4]))
		if err != nil {
			fail(fmt.Errorf("old: %v", err))
		}
		cur, err := openQuorum(vkeys, quorum, readFile(os.Args[5]))
		if err != nil {
			fail(fmt.Errorf("new: %v", err))
		}
		proof, err := parseHashes(strings.Split(string(readFile(os.Args[6])), "\n"))
		if err != nil {
			fail(err)
		}
		if err := tlog.CheckTree(tlog.TreeProof(proof), cur.size, cur.root, old.size, old.root); err != nil {
			fail(fmt.Errorf("tlog.CheckTree: %v", err))
		}
		fmt.Printf("ok consistency %d -> %d\n", old.size, cur.size)
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}
