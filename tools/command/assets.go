package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/gobwas/glob"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// globFiles walks dir and returns the regular files (relative, "/"-separated,
// no leading "./") selected by globs. Globs apply in order; a glob starting
// with "!" removes what earlier globs added. "*" stops at "/", "**" does not.
func globFiles(dir string, globs []string) ([]string, error) {
	type rule struct {
		exclude bool
		g       glob.Glob
	}
	rules := make([]rule, 0, len(globs))
	for _, g := range globs {
		r := rule{exclude: strings.HasPrefix(g, "!")}
		compiled, err := glob.Compile(strings.TrimPrefix(g, "!"), '/')
		if err != nil {
			return nil, fmt.Errorf("invalid glob %q: %w", g, err)
		}
		r.g = compiled
		rules = append(rules, r)
	}
	var files []string
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		selected := false
		for _, r := range rules {
			if r.g.Match(p) {
				selected = !r.exclude
			}
		}
		if selected {
			files = append(files, p)
		}
		return nil
	})
	return files, err
}

// collectAssets fills the `assets` and `archive` outputs after a successful
// run, when assetPaths / archivePaths were given.
func collectAssets(in inputs, dir string, outs resource.PropertyMap) error {
	if in.HasAssetPaths {
		files, err := globFiles(dir, in.AssetPaths)
		if err != nil {
			return err
		}
		assets := resource.PropertyMap{}
		for _, f := range files {
			a, err := resource.NewPathAsset(path.Join(dir, f))
			if err != nil {
				return err
			}
			assets[resource.PropertyKey(f)] = resource.NewAssetProperty(a)
		}
		outs["assets"] = resource.NewObjectProperty(assets)
	}
	if in.HasArchivePaths {
		files, err := globFiles(dir, in.ArchivePaths)
		if err != nil {
			return err
		}
		contents := map[string]any{}
		for _, f := range files {
			a, err := resource.NewPathAsset(path.Join(dir, f))
			if err != nil {
				return err
			}
			contents[f] = a
		}
		archive, err := resource.NewAssetArchive(contents)
		if err != nil {
			return err
		}
		outs["archive"] = resource.NewArchiveProperty(archive)
	}
	return nil
}
