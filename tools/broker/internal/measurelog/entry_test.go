package measurelog

import (
	"strings"
	"testing"
)

// A valid entry as a volunteer would read it, written out by hand (not by
// Encode): the canonical form the log holds.
const canonicalEntry = `{
  "relay": "local-exit",
  "imageDigest": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
  "measurement": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
  "policy": "0x30000",
  "vcpus": 2,
  "vcpuType": "EPYC-v4",
  "buildRecordSha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "time": "2026-12-06T07:00:00Z"
}
`

func TestCanonicalEntryDecodesAndEncodesBack(t *testing.T) {
	e, err := DecodeLogged([]byte(canonicalEntry))
	if err != nil {
		t.Fatal(err)
	}
	if e.Relay != "local-exit" || e.VCPUs != 2 || e.Policy != "0x30000" || e.MeasurementBytes()[47] != 0x2f {
		t.Errorf("decoded %+v", e)
	}
	if p, _ := e.PolicyValue(); p != 0x30000 {
		t.Errorf("policy value %#x", p)
	}
	if got := string(e.Encode()); got != canonicalEntry {
		t.Errorf("Encode:\n%s\nwant:\n%s", got, canonicalEntry)
	}
}

func TestEntryRulesNameTheField(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(canonicalEntry, old, new, 1) }
	cases := []struct {
		name, input, want string
	}{
		{"unknown field", replace(`"vcpus": 2,`, `"vcpus": 2, "note": "x",`), `unknown field "note"`},
		{"relay not a name", replace(`"local-exit"`, `"Local Exit"`), "relay"},
		{"image digest upper case", replace(`"0123456789abcdef0123`, `"0123456789ABCDEF0123`), "imageDigest"},
		{"measurement 47 bytes", replace(`2d2e2f"`, `2d2e"`), "measurement"},
		{"measurement with 0x", replace(`"000102`, `"0x000102`), "measurement"},
		{"measurement upper case", replace(`0a0b0c`, `0A0B0C`), "measurement"},
		{"policy without 0x", replace(`"0x30000"`, `"30000"`), "policy"},
		{"policy leading zero", replace(`"0x30000"`, `"0x030000"`), "policy"},
		{"policy over 64 bits", replace(`"0x30000"`, `"0x10000000000000000"`), "policy"},
		{"no vcpus", replace(`"vcpus": 2`, `"vcpus": 0`), "vcpus"},
		{"vcpus as a string", replace(`"vcpus": 2`, `"vcpus": "2"`), "vcpus"},
		{"vcpu type with a space", replace(`"EPYC-v4"`, `"EPYC v4"`), "vcpuType"},
		{"build record short", replace(`"aaaaaaaa`, `"aaaaaa`), "buildRecordSha256"},
		{"time with an offset", replace(`07:00:00Z`, `08:00:00+01:00`), "time"},
		{"time with fractions", replace(`07:00:00Z`, `07:00:00.5Z`), "time"},
		{"missing time", replace(`,
  "time": "2026-12-06T07:00:00Z"`, ``), "time"},
		{"two values", canonicalEntry + "{}", "more than one JSON value"},
		{"too large", canonicalEntry + strings.Repeat(" ", MaxEntrySize), "more than an entry's"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEntry([]byte(c.input))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseEntry: %v, want an error naming %q", err, c.want)
			}
		})
	}
}

func TestLoggedEntryMustBeCanonical(t *testing.T) {
	for name, input := range map[string]string{
		"compact":             strings.Join(strings.Fields(canonicalEntry), ""),
		"fields reordered":    strings.NewReplacer(`"vcpus": 2,`, `"policy": "0x30000",`, `"policy": "0x30000",`, `"vcpus": 2,`).Replace(canonicalEntry),
		"no final newline":    strings.TrimSuffix(canonicalEntry, "\n"),
		"duplicated key":      strings.Replace(canonicalEntry, `"policy": "0x30000",`, `"policy": "0x1",  "policy": "0x30000",`, 1),
		"trailing blank line": canonicalEntry + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseEntry([]byte(input)); err != nil {
				// Free layout is fine as input to Append.
				t.Fatalf("ParseEntry refuses %s: %v", name, err)
			}
			if _, err := DecodeLogged([]byte(input)); err == nil {
				t.Errorf("DecodeLogged accepts a %s entry", name)
			}
		})
	}
}

func TestEntryPathNumbers(t *testing.T) {
	for path, want := range map[string]int{
		"entries/000001.json":  1,
		"entries/000042.json":  42,
		"entries/1234567.json": 1234567,
		"entries/000000.json":  0,
		"entries/00042.json":   0,
		"entries/0000042.json": 0,
		"entries/000042.JSON":  0,
		"other/000042.json":    0,
		"entries/+00042.json":  0,
	} {
		if got := entryNumber(path); got != want {
			t.Errorf("entryNumber(%q) = %d, want %d", path, got, want)
		}
	}
	if EntryPath(42) != "entries/000042.json" {
		t.Errorf("EntryPath(42) = %s", EntryPath(42))
	}
}
