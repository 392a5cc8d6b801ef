// Command measurement-log keeps and checks the public, append-only log of
// the relay images' launch measurements: a git repository of SSH-signed
// commits, each adding one entry (internal/measurelog says why git).
//
//	measurement-log append --log DIR --signing-key FILE --entry ENTRY.json [--allowed-signers FILE]
//	measurement-log verify --log DIR --allowed-signers FILE [--old COMMIT] [--new COMMIT]
//	measurement-log verify --log DIR --allowed-signers FILE OLD NEW
//	measurement-log find   --log DIR --allowed-signers FILE --measurement HEX [--relay NAME]
//
// A separate program from the coming verify-relay: the operator's deploy
// appends here, and a volunteer checks a copy of the log here without any
// relay, while verify-relay uses the same package (measurelog.Verify, then
// Log.Find) for its one "measurement in the log" check.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"diskless-relays/tools/broker/internal/cli"
	"diskless-relays/tools/broker/internal/fsutil"
	"diskless-relays/tools/broker/internal/measurelog"
	"diskless-relays/tools/broker/internal/protocol"
)

const usage = `usage:
  measurement-log append --log DIR --signing-key FILE --entry ENTRY.json [--allowed-signers FILE]
  measurement-log verify --log DIR --allowed-signers FILE [--old COMMIT] [--new COMMIT]
  measurement-log verify --log DIR --allowed-signers FILE OLD [NEW]
  measurement-log find   --log DIR --allowed-signers FILE --measurement HEX [--relay NAME]

append  adds one entry (JSON: relay, imageDigest, measurement, policy, vcpus,
        vcpuType, buildRecordSha256, time) as a commit signed with the SSH
        key; creates the log (a bare git repository) on first use. Prints the
        entry's path and commit as JSON.
verify  checks every commit's signature (from the root, or after OLD), that
        the history is linear and only adds entries, that every entry
        decodes, and that OLD is an ancestor of NEW (default HEAD). One
        verdict line per check; exit 0 only if all hold.
find    verifies the log, then prints the entries with that measurement as
        JSON; exit 1 when there is none.
`

func main() {
	cli.Main("measurement-log", usage, map[string]func([]string) error{"append": cmdAppend, "verify": cmdVerify, "find": cmdFind})
}

// required answers usage and exit 2 to an empty required flag.
func required(fs *flag.FlagSet, values ...*string) {
	for _, v := range values {
		if *v == "" {
			fs.Usage()
			os.Exit(2)
		}
	}
}

func noArgs(fs *flag.FlagSet) {
	if fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
}

func cmdAppend(args []string) error {
	fs := cli.Flags("append", usage)
	dir := fs.String("log", "", "the log: a bare git repository, created when missing or empty")
	key := fs.String("signing-key", "", "the image signing key: an OpenSSH private key file, mode 0600")
	entryFile := fs.String("entry", "", "the entry, a JSON file")
	signers := fs.String("allowed-signers", "", "allowed-signers file the existing log must verify against (default: the signing key's own public key)")
	_ = fs.Parse(args)
	required(fs, dir, key, entryFile)
	noArgs(fs)
	entry, err := readEntry(*entryFile)
	if err != nil {
		return err
	}
	result, err := measurelog.Append(*dir, measurelog.AppendOptions{SigningKey: *key, AllowedSigners: *signers, Entry: entry})
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(struct {
		Added  bool   `json:"added"`
		Path   string `json:"path"`
		Commit string `json:"commit"`
	}{result.Added, result.Logged.Path, result.Logged.Commit}, "", "  ")
	fmt.Println(string(out))
	return nil
}

func readEntry(path string) (measurelog.Entry, error) {
	data, err := fsutil.ReadBounded(path, measurelog.MaxEntrySize)
	if err != nil {
		return measurelog.Entry{}, fmt.Errorf("entry: %v", err)
	}
	e, err := measurelog.ParseEntry(data)
	if err != nil {
		return measurelog.Entry{}, fmt.Errorf("entry %s: %v", path, err)
	}
	return e, nil
}

func cmdVerify(args []string) error {
	fs := cli.Flags("verify", usage)
	dir := fs.String("log", "", "a copy of the log (a clone, bare or not)")
	signers := fs.String("allowed-signers", "", "OpenSSH allowed-signers file with the image signing key's public key")
	oldRev := fs.String("old", "", "a head seen before: it must be an ancestor of NEW")
	newRev := fs.String("new", "", "the head to check (default HEAD)")
	_ = fs.Parse(args)
	required(fs, dir, signers)
	// OLD and NEW as positionals too, for npm run verify-log -- OLD NEW.
	switch rest := fs.Args(); {
	case len(rest) == 0:
	case len(rest) <= 2 && *oldRev == "" && *newRev == "":
		*oldRev = rest[0]
		if len(rest) == 2 {
			*newRev = rest[1]
		}
	default:
		fs.Usage()
		os.Exit(2)
	}
	verdicts, _, err := measurelog.Verify(*dir, measurelog.VerifyOptions{AllowedSigners: *signers, Old: *oldRev, New: *newRev})
	if err != nil {
		return err
	}
	for _, v := range verdicts {
		fmt.Println(v)
	}
	if !measurelog.AllOK(verdicts) {
		return errors.New("the log does not verify")
	}
	return nil
}

func cmdFind(args []string) error {
	fs := cli.Flags("find", usage)
	dir := fs.String("log", "", "a copy of the log")
	signers := fs.String("allowed-signers", "", "OpenSSH allowed-signers file with the image signing key's public key")
	measurement := fs.String("measurement", "", "the launch measurement, 96 hex digits")
	relay := fs.String("relay", "", "only this relay's entries")
	_ = fs.Parse(args)
	required(fs, dir, signers, measurement)
	noArgs(fs)
	m, err := protocol.ParseMeasurement(*measurement)
	if err != nil {
		return fmt.Errorf("--measurement: %v", err)
	}
	verdicts, log, err := measurelog.Verify(*dir, measurelog.VerifyOptions{AllowedSigners: *signers})
	if err != nil {
		return err
	}
	if log == nil {
		for _, v := range verdicts {
			fmt.Fprintln(os.Stderr, v)
		}
		return errors.New("the log does not verify, so it answers nothing")
	}
	found := log.Find(m, *relay)
	if len(found) == 0 {
		return fmt.Errorf("measurement %x is not in the log (head %s)", m, log.Head())
	}
	type row struct {
		measurelog.Entry
		Path   string `json:"path"`
		Commit string `json:"commit"`
	}
	rows := make([]row, len(found))
	for i, e := range found {
		rows[i] = row{e.Entry, e.Path, e.Commit}
	}
	out, _ := json.MarshalIndent(rows, "", "  ")
	fmt.Println(string(out))
	return nil
}
