module github.com/mspgateway/msp-gateway/clients/go

go 1.19

// The versions Debian 12 ships (golang-google-grpc-dev, golang-google-protobuf-dev), which
// build.sh builds against offline. Online, `go mod tidy` adds the indirect requirements and go.sum.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
