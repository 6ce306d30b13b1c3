// Command protoc-gen-twirp-python is a protoc plugin that writes a Twirp
// client in Python for every service of the .proto files it is given.
//
// For a file a/v1/x.proto with services it writes a/v1/x_twirp.py, which
// holds one client class per service (ServiceNameClient, a snake_case method
// per RPC) and imports the messages from the x_pb2 module that protoc's
// built-in Python generator writes beside it. It also writes, once,
// twirp_runtime.py at the root of the output (the HTTP transport and the
// error types every client shares) and an __init__.py in every folder, so
// that the output folder is a Python package that can live inside another
// package: imports between generated modules are relative.
//
// The generated code needs only Python's standard library (http.client) and
// the protobuf runtime. It speaks both Twirp encodings: protobuf
// (application/protobuf) and JSON (application/json, proto field names).
//
// Run it through buf (see buf.gen.py.yaml) or protoc:
//
//	protoc --python_out=OUT --pyi_out=OUT --twirp-python_out=OUT a/v1/x.proto
package main

import (
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "protoc-gen-twirp-python:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	resp := respond(req)
	data, err = proto.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}

// respond generates the files for req; a generation error goes into the
// response, as protoc expects.
func respond(req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	// protogen insists on a Go import path for every file, which a Python
	// generator has no use for: give files without one a placeholder.
	for _, f := range req.GetProtoFile() {
		if f.GetOptions().GetGoPackage() == "" {
			if f.Options == nil {
				f.Options = new(descriptorpb.FileOptions)
			}
			f.Options.GoPackage = proto.String("example.invalid/python/" + f.GetName())
		}
	}
	p, err := protogen.Options{}.New(req)
	if err != nil {
		return &pluginpb.CodeGeneratorResponse{Error: proto.String(err.Error())}
	}
	p.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
	if err := generate(p); err != nil {
		p.Error(err)
	}
	return p.Response()
}
