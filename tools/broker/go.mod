module diskless-relays/tools/broker

go 1.25.11

require (
	filippo.io/age v1.3.2
	filippo.io/edwards25519 v1.2.0
	github.com/google/go-sev-guest v0.15.0
	github.com/google/uuid v1.6.0
	golang.org/x/crypto v0.55.0
	golang.org/x/sys v0.47.0
)

require (
	filippo.io/hpke v0.4.0 // indirect
	github.com/google/go-configfs-tsm v0.2.2 // indirect
	github.com/google/logger v1.1.1 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	google.golang.org/protobuf v1.33.0 // indirect
)
