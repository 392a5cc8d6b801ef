// Builds Pulumi's Node.js language host. Its own module
// (sdk/nodejs/cmd/pulumi-language-nodejs/v3) is not served by the module
// proxy reachable here; v3.68.0 is the last release in which the host still
// lived inside sdk/v3, which is served. The host speaks the same
// LanguageRuntime protocol the v3.248 CLI drives and launches the project's
// own @pulumi/pulumi runtime (cmd/run), so program semantics come from the SDK
// pinned in package.json, not from this version.
module diskless-relays/tools/pulumi-language-nodejs

go 1.19

require github.com/pulumi/pulumi/sdk/v3 v3.68.0
