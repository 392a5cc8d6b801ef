// Command vulndb writes a small Grype vulnerability database (schema v6)
// from a JSON spec, as an archive `grype db import` accepts. It exists so
// that tests can give the real grype a database holding known entries,
// without downloading the real one (about 1.6 GB unpacked). It writes
// through grype's own v6 store and archive code, so the result is what
// grype itself builds and expects.
//
//	vulndb -spec entries.json -out DIR   prints the archive's path
//
// The spec:
//
//	{ "built": "2026-11-30T00:00:00Z",   // optional; default now
//	  "entries": [ { "id": "CVE-2099-0001", "distro": "debian:12",
//	                 "package": "tor", "fixedIn": "0.4.9.99-1",   // omitted: not fixed
//	                 "severity": "high" } ] }
//
// distro is NAME:RELEASE (debian, ubuntu or alpine); a Debian release's
// codename is known, others take "codename".
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	dbbuild "github.com/anchore/grype/grype/db/v6/build"
	"github.com/anchore/grype/grype/db/v6/name"
	"github.com/anchore/syft/syft/pkg"
	"gorm.io/gorm"
)

// Spec is the input: when the database says it was built, and its entries.
type Spec struct {
	Built   *time.Time `json:"built,omitempty"`
	Entries []Entry    `json:"entries"`
}

// Entry is one vulnerability of one package of one distribution release.
type Entry struct {
	ID       string `json:"id"`
	Distro   string `json:"distro"`
	Package  string `json:"package"`
	FixedIn  string `json:"fixedIn,omitempty"`
	Severity string `json:"severity"`
	// Codename of the release (e.g. bookworm); grype looks a distribution up by
	// it as well as by version. Known Debian releases need none.
	Codename string `json:"codename,omitempty"`
}

// Debian's codenames by major release, for entries that give none.
var debianCodenames = map[string]string{"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"}

func (e Entry) codename() string {
	if e.Codename != "" {
		return e.Codename
	}
	distro, release, _ := strings.Cut(e.Distro, ":")
	major, _, _ := strings.Cut(release, ".")
	if distro == "debian" {
		return debianCodenames[major]
	}
	return ""
}

// The distributions an entry may name, with the package type and version
// comparison grype uses for them.
var distroKinds = map[string]struct {
	pkgType       pkg.Type
	versionFormat string
}{
	"debian": {pkg.DebPkg, "dpkg"},
	"ubuntu": {pkg.DebPkg, "dpkg"},
	"alpine": {pkg.ApkPkg, "apk"},
}

var severities = map[string]bool{"negligible": true, "low": true, "medium": true, "high": true, "critical": true}

// ProviderID names where the entries came from, in the database and in grype's output.
const ProviderID = "diskless-relays-vulndb"

func (e Entry) check(i int) error {
	where := fmt.Sprintf("entries[%d]", i)
	if e.ID == "" {
		return fmt.Errorf("%s.id: missing (e.g. CVE-2024-0001)", where)
	}
	if e.Package == "" {
		return fmt.Errorf("%s.package: missing", where)
	}
	distro, release, ok := strings.Cut(e.Distro, ":")
	if _, known := distroKinds[distro]; !ok || !known || release == "" {
		return fmt.Errorf("%s.distro: %q is not NAME:RELEASE with NAME one of debian, ubuntu, alpine (e.g. debian:12)", where, e.Distro)
	}
	if !severities[e.Severity] {
		return fmt.Errorf("%s.severity: %q is not one of negligible, low, medium, high, critical", where, e.Severity)
	}
	return nil
}

// ReadSpec reads and checks a spec file.
func ReadSpec(file string) (Spec, error) {
	var spec Spec
	data, err := os.ReadFile(file)
	if err != nil {
		return spec, err
	}
	decoder := json.NewDecoder(strings.NewReader(string(data)))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&spec); err != nil {
		return spec, fmt.Errorf("%s: %w", file, err)
	}
	if len(spec.Entries) == 0 {
		return spec, fmt.Errorf("%s: entries: none; a database needs at least one", file)
	}
	for i, entry := range spec.Entries {
		if err := entry.check(i); err != nil {
			return spec, fmt.Errorf("%s: %w", file, err)
		}
	}
	return spec, nil
}

func operatingSystem(entry Entry) *v6.OperatingSystem {
	name, release, _ := strings.Cut(entry.Distro, ":")
	major, minor, _ := strings.Cut(release, ".")
	return &v6.OperatingSystem{Name: name, ReleaseID: name, MajorVersion: major, MinorVersion: minor, Codename: entry.codename()}
}

func handles(entry Entry) (*v6.VulnerabilityHandle, *v6.AffectedPackageHandle) {
	vulnerability := &v6.VulnerabilityHandle{
		Name:       entry.ID,
		ProviderID: ProviderID,
		Status:     v6.VulnerabilityActive,
		BlobValue: &v6.VulnerabilityBlob{
			ID:         entry.ID,
			Severities: []v6.Severity{{Scheme: v6.SeveritySchemeCHMLN, Value: entry.Severity, Rank: 1}},
		},
	}
	distro, _, _ := strings.Cut(entry.Distro, ":")
	kind := distroKinds[distro]
	// As grype's own builder states a fixed version: affected below it; with none, every version is.
	fix := &v6.Fix{State: v6.NotFixedStatus}
	constraint := ""
	if entry.FixedIn != "" {
		fix = &v6.Fix{State: v6.FixedStatus, Version: entry.FixedIn}
		constraint = "< " + entry.FixedIn
	}
	affected := &v6.AffectedPackageHandle{
		Vulnerability:   vulnerability,
		OperatingSystem: operatingSystem(entry),
		Package:         &v6.Package{Ecosystem: string(kind.pkgType), Name: name.Normalize(entry.Package, kind.pkgType)},
		BlobValue: &v6.PackageBlob{
			CVEs:   []string{entry.ID},
			Ranges: []v6.Range{{Version: v6.Version{Type: kind.versionFormat, Constraint: constraint}, Fix: fix}},
		},
	}
	return vulnerability, affected
}

// Write builds the database in dir and packs it; returns the archive's path.
func Write(spec Spec, dir string) (string, error) {
	built := time.Now().UTC()
	if spec.Built != nil {
		built = spec.Built.UTC()
	}
	// Whole seconds, as grype's own metadata writer stores them (never later than now).
	built = built.Truncate(time.Second)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	store, err := v6.NewWriter(v6.Config{DBDirPath: dir})
	if err != nil {
		return "", err
	}
	if err := store.AddProvider(v6.Provider{ID: ProviderID, Version: "1", Processor: "diskless-relays/tools/vulndb", DateCaptured: &built}); err != nil {
		return "", errors.Join(err, store.Close())
	}
	for _, entry := range spec.Entries {
		vulnerability, affected := handles(entry)
		if err := store.AddVulnerabilities(vulnerability); err != nil {
			return "", errors.Join(err, store.Close())
		}
		if err := store.AddAffectedPackages(affected); err != nil {
			return "", errors.Join(err, store.Close())
		}
	}
	// The store stamps its metadata with the time it was opened; the spec's
	// build time replaces it, so that a test can make a database of any age.
	withDB, ok := store.(interface{ GetDB() *gorm.DB })
	if !ok {
		return "", errors.Join(errors.New("grype's v6 store no longer exposes its database"), store.Close())
	}
	if err := withDB.GetDB().Model(&v6.DBMetadata{}).Where("true").Update("build_timestamp", &built).Error; err != nil {
		return "", errors.Join(err, store.Close())
	}
	if err := store.Close(); err != nil {
		return "", err
	}
	if err := dbbuild.CreateArchive(dir, "tar.gz", nil); err != nil {
		return "", err
	}
	archives, err := filepath.Glob(filepath.Join(dir, "vulnerability-db_v*.tar.gz"))
	if err != nil || len(archives) != 1 {
		return "", fmt.Errorf("expected one archive in %s, found %d", dir, len(archives))
	}
	return archives[0], nil
}

func main() {
	specFile := flag.String("spec", "", "the JSON spec of entries")
	out := flag.String("out", "", "an empty or new directory for the database and its archive")
	flag.Parse()
	if *specFile == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: vulndb -spec ENTRIES.json -out DIR")
		os.Exit(2)
	}
	spec, err := ReadSpec(*specFile)
	if err == nil {
		var archive string
		if archive, err = Write(spec, *out); err == nil {
			fmt.Println(archive)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "vulndb:", err)
	os.Exit(1)
}
