package bridge

import (
	"context"
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Pulumi reserves "id" for the engine-managed resource ID, so a Terraform
// resource whose own "id" attribute is something the user sets (an SDN zone
// name, a storage ID, a VM ID...) or is not a string cannot expose it under
// that name. Such attributes are published as "resourceId" (always a string,
// as in the published SDKs) and the Pulumi ID is taken from it.
const renamedIDProperty = "resourceId"

// bridgeNamedID lists resources whose id the published SDK exposes under the
// bridge's default name (<resource>Id) instead of resourceId; they are left to
// the bridge.
var bridgeNamedID = map[string]bool{
	"proxmox_sdn_controller_evpn": true, // sdnControllerEvpnId
}

// needsIDRename reports whether the resource's "id" attribute cannot be used
// as the Pulumi ID directly. SDKv2 resources always have a plain computed
// string id and never need it.
func needsIDRename(tfName string, r shim.Resource) bool {
	if bridgeNamedID[tfName] {
		return false
	}
	id, ok := r.Schema().GetOk("id")
	if !ok {
		return false
	}
	isInput := id.Optional() || id.Required()
	return isInput || id.Type() != shim.TypeString
}

// renameID maps the Terraform "id" attribute to resourceId and derives the
// Pulumi ID from it.
func renameID(r *tfbridge.ResourceInfo) {
	if r.Fields == nil {
		r.Fields = map[string]*tfbridge.SchemaInfo{}
	}
	if _, done := r.Fields["id"]; !done {
		r.Fields["id"] = &tfbridge.SchemaInfo{Name: renamedIDProperty, Type: "string"}
	}
	if r.ComputeID == nil {
		r.ComputeID = idFromResourceID
	}
}

func idFromResourceID(_ context.Context, state resource.PropertyMap) (resource.ID, error) {
	v, ok := state[renamedIDProperty]
	if !ok || v.IsNull() {
		return "", fmt.Errorf("state has no %q to derive the resource ID from", renamedIDProperty)
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	switch {
	case v.IsString():
		return resource.ID(v.StringValue()), nil
	case v.IsNumber():
		return resource.ID(strconv.FormatFloat(v.NumberValue(), 'f', -1, 64)), nil
	case v.IsComputed(), v.IsOutput():
		return "", fmt.Errorf("%q is not known yet", renamedIDProperty)
	default:
		return "", fmt.Errorf("%q has unsupported type %s", renamedIDProperty, v.TypeString())
	}
}
