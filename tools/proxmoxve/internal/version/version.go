// Package version holds the plugin version. build.sh overrides it with
//
//	-ldflags "-X diskless-relays/tools/proxmoxve/internal/version.Version=8.6.0"
//
// so that GetPluginInfo reports the version of the npm SDK this plugin serves.
package version

// Version is the provider version. The default marks an unstamped build.
var Version = "0.0.0-dev"
