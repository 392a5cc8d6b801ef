package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/installation"
)

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// importArchive loads an archive the way `grype db import` does (grype's own
// curator, age and checksum validation on) into a fresh cache directory.
func importArchive(t *testing.T, archive string) installation.Config {
	t.Helper()
	cfg := installation.Config{DBRootDir: t.TempDir(), ValidateAge: true, ValidateChecksum: true, MaxAllowedBuiltAge: 5 * 24 * time.Hour}
	curator, err := installation.NewCurator(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := curator.Import(archive); err != nil {
		t.Fatalf("grype's import refused the archive: %v", err)
	}
	return cfg
}

func TestArchiveImportsWithItsBuildTimeAndEntries(t *testing.T) {
	built := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	spec, err := ReadSpec(writeSpec(t, `{"built": "`+built.Format(time.RFC3339)+`", "entries": [
		{"id": "CVE-2099-0001", "distro": "debian:12", "package": "tor", "fixedIn": "0.4.9.99-1", "severity": "high"},
		{"id": "CVE-2099-0002", "distro": "debian:12", "package": "zlib", "severity": "critical"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	archive, err := Write(spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(archive, ".tar.gz") {
		t.Fatalf("archive %s is not a .tar.gz", archive)
	}
	cfg := importArchive(t, archive)
	curator, _ := installation.NewCurator(cfg, nil)
	status := curator.Status()
	if status.Error != nil {
		t.Fatalf("grype says the database is not valid: %v", status.Error)
	}
	if !status.Built.Equal(built) {
		t.Fatalf("built %s, want %s", status.Built, built)
	}
	if !strings.HasPrefix(status.SchemaVersion, "v6.") {
		t.Fatalf("schema %s, want v6.x.y", status.SchemaVersion)
	}

	reader, err := curator.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	found, err := reader.GetAffectedPackages(&v6.PackageSpecifier{Name: "tor", Ecosystem: "deb"}, &v6.GetPackageOptions{
		PreloadOS: true, PreloadBlob: true, PreloadVulnerability: true,
		OSs: v6.OSSpecifiers{{Name: "debian", MajorVersion: "12", MinorVersion: "15", LabelVersion: "bookworm"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Vulnerability.Name != "CVE-2099-0001" {
		t.Fatalf("tor on debian 12.15: found %+v, want CVE-2099-0001", found)
	}
	r := found[0].BlobValue.Ranges[0]
	if r.Version.Constraint != "< 0.4.9.99-1" || r.Fix.State != v6.FixedStatus || r.Fix.Version != "0.4.9.99-1" || r.Version.Type != "dpkg" {
		t.Fatalf("tor's range %+v, fix %+v", r.Version, r.Fix)
	}
	zlib, err := reader.GetAffectedPackages(&v6.PackageSpecifier{Name: "zlib", Ecosystem: "deb"}, &v6.GetPackageOptions{PreloadBlob: true})
	if err != nil || len(zlib) != 1 || zlib[0].BlobValue.Ranges[0].Fix.State != v6.NotFixedStatus || zlib[0].BlobValue.Ranges[0].Version.Constraint != "" {
		t.Fatalf("zlib without fixedIn: %+v (%v), want not-fixed for every version", zlib, err)
	}
}

func TestAnOldDatabaseImportsButGrypeCallsItTooOld(t *testing.T) {
	spec, err := ReadSpec(writeSpec(t, `{"built": "2020-01-01T00:00:00Z", "entries": [{"id": "CVE-2099-0001", "distro": "debian:12", "package": "tor", "severity": "low"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	archive, err := Write(spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(filepath.Base(archive), "_1577836800.") {
		t.Fatalf("archive name %s does not carry the build time 1577836800", archive)
	}
	curator, _ := installation.NewCurator(importArchive(t, archive), nil)
	status := curator.Status()
	if status.Error == nil || !strings.Contains(status.Error.Error(), "max allowed age") {
		t.Fatalf("status error %v, want grype's max allowed age refusal", status.Error)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{`{"entries": []}`, "entries: none"},
		{`{"entries": [{"distro": "debian:12", "package": "tor", "severity": "high"}]}`, "entries[0].id: missing"},
		{`{"entries": [{"id": "X", "distro": "debian", "package": "tor", "severity": "high"}]}`, "entries[0].distro"},
		{`{"entries": [{"id": "X", "distro": "debian:12", "package": "tor", "severity": "severe"}]}`, "entries[0].severity"},
		{`{"entries": [{"id": "X", "distro": "debian:12", "severity": "high"}]}`, "entries[0].package: missing"},
		{`{"entries": [{"id": "X", "distro": "debian:12", "package": "tor", "severity": "high", "fixed": "1"}]}`, `unknown field "fixed"`},
	} {
		_, err := ReadSpec(writeSpec(t, tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("spec %s: error %v, want one saying %q", tc.spec, err, tc.want)
		}
	}
}
