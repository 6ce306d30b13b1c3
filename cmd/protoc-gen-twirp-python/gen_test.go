package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// generated runs the plugin on files (generating those named in gen) and
// returns the output files by name.
func generated(t *testing.T, files []*descriptorpb.FileDescriptorProto, gen ...string) map[string]string {
	t.Helper()
	resp := respond(&pluginpb.CodeGeneratorRequest{FileToGenerate: gen, ProtoFile: files})
	if resp.Error != nil {
		t.Fatalf("plugin error: %s", resp.GetError())
	}
	out := map[string]string{}
	for _, f := range resp.File {
		out[f.GetName()] = f.GetContent()
	}
	return out
}

func names(m map[string]string) []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func TestKVService(t *testing.T) {
	fd := protodesc.ToFileDescriptorProto(kvv1.File_kv_v1_kv_proto)
	out := generated(t, []*descriptorpb.FileDescriptorProto{fd}, fd.GetName())

	want := []string{"__init__.py", "kv/__init__.py", "kv/v1/__init__.py", "kv/v1/kv_twirp.py", "twirp_runtime.py"}
	if got := names(out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("files = %v, want %v", got, want)
	}
	py := out["kv/v1/kv_twirp.py"]
	for _, s := range []string{
		"from ... import twirp_runtime as _twirp",
		"from . import kv_pb2 as _kv_dot_v1_dot_kv__pb2",
		"class KVServiceClient(_twirp.Client):",
		`SERVICE = "kv.v1.KVService"`,
		"def get(",
		`"Get", request, _kv_dot_v1_dot_kv__pb2.GetResponse`,
		"request: _kv_dot_v1_dot_kv__pb2.PutRequest,",
		`"""Calls kv.v1.KVService/Get."""`, // compiled descriptors carry no comments
	} {
		if !strings.Contains(py, s) {
			t.Errorf("kv_twirp.py lacks %q", s)
		}
	}
	// Every RPC of the service has its method.
	svc := kvv1.File_kv_v1_kv_proto.Services().ByName("KVService")
	for i := 0; i < svc.Methods().Len(); i++ {
		m := svc.Methods().Get(i)
		if !strings.Contains(py, "    def "+methodName(string(m.Name()))+"(") {
			t.Errorf("no method for %s", m.Name())
		}
	}
	if !strings.HasPrefix(out["twirp_runtime.py"], header) || !strings.Contains(out["twirp_runtime.py"], "class TwirpError(Exception):") {
		t.Error("twirp_runtime.py is not the runtime")
	}
	compilePython(t, out)
}

// crossPackage is two files: a/v1/types.proto with a message, and
// b/v1/svc.proto whose service uses it, a nested message, a keyword-named
// RPC and a name with an acronym.
func crossPackage(streaming bool) []*descriptorpb.FileDescriptorProto {
	msg := func(name string, nested ...*descriptorpb.DescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name), NestedType: nested}
	}
	types := &descriptorpb.FileDescriptorProto{
		Name: proto.String("a/v1/types.proto"), Package: proto.String("a.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{msg("Thing")},
	}
	method := func(name, in, out string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(in), OutputType: proto.String(out)}
	}
	m := []*descriptorpb.MethodDescriptorProto{
		method("Import", ".a.v1.Thing", ".b.v1.Outer.Inner"),
		method("GetHTTPStatus", ".b.v1.Outer", ".a.v1.Thing"),
		method("Close", ".b.v1.Outer", ".b.v1.Outer"),
	}
	if streaming {
		m[0].ServerStreaming = proto.Bool(true)
	}
	svc := &descriptorpb.FileDescriptorProto{
		Name: proto.String("b/v1/svc.proto"), Package: proto.String("b.v1"), Syntax: proto.String("proto3"),
		Dependency:  []string{"a/v1/types.proto"},
		MessageType: []*descriptorpb.DescriptorProto{msg("Outer", msg("Inner"))},
		Service:     []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Things"), Method: m}},
		SourceCodeInfo: &descriptorpb.SourceCodeInfo{Location: []*descriptorpb.SourceCodeInfo_Location{{
			Path: []int32{6, 0}, Span: []int32{0, 0, 0},
			LeadingComments: proto.String(" Things serves \"\"\"quoted\"\"\" things\n with a \\ backslash.\n"),
		}}},
	}
	return []*descriptorpb.FileDescriptorProto{types, svc}
}

func TestCrossPackageImportsAndNames(t *testing.T) {
	out := generated(t, crossPackage(false), "b/v1/svc.proto")
	py, ok := out["b/v1/svc_twirp.py"]
	if !ok {
		t.Fatalf("no b/v1/svc_twirp.py in %v", names(out))
	}
	if _, ok := out["a/v1/types_twirp.py"]; ok {
		t.Error("a file without services (and not asked for) got a client")
	}
	for _, s := range []string{
		"from ...a.v1 import types_pb2 as _a_dot_v1_dot_types__pb2",
		"from . import svc_pb2 as _b_dot_v1_dot_svc__pb2",
		"class ThingsClient(_twirp.Client):",
		"def import_(",
		"def get_http_status(",
		"def close_(",
		"request: _a_dot_v1_dot_types__pb2.Thing,",
		"-> _b_dot_v1_dot_svc__pb2.Outer.Inner:",
		`"Import", request`,
		`"""Things serves \"\"\"quoted\"\"\" things` + "\n    with a \\\\ backslash.\n    " + `"""`,
	} {
		if !strings.Contains(py, s) {
			t.Errorf("svc_twirp.py lacks %q:\n%s", s, py)
		}
	}
	compilePython(t, out)
}

func TestStreamingIsRefused(t *testing.T) {
	resp := respond(&pluginpb.CodeGeneratorRequest{FileToGenerate: []string{"b/v1/svc.proto"}, ProtoFile: crossPackage(true)})
	if !strings.Contains(resp.GetError(), "streams") {
		t.Fatalf("error = %q, want a refusal of the streaming RPC", resp.GetError())
	}
}

func TestMethodName(t *testing.T) {
	for in, want := range map[string]string{
		"Get": "get", "OpenSession": "open_session", "WriteBatch": "write_batch", "GetHTTPStatus": "get_http_status",
		"HTTPGet": "http_get", "V2Call": "v2_call", "Import": "import_", "Close": "close_", "lower": "lower",
	} {
		if got := methodName(in); got != want {
			t.Errorf("methodName(%q) = %q, want %q", in, got, want)
		}
	}
}

// compilePython byte-compiles the generated files when a Python 3 is on the
// PATH (CI has one), so a syntax error in the templates fails here.
func compilePython(t *testing.T, files map[string]string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("python3 not found; generated code not compiled")
		return
	}
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(py, "-m", "compileall", "-q", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python3 -m compileall: %v\n%s", err, out)
	}
}
