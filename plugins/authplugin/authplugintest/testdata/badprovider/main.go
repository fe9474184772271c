// Command badprovider is an auth provider written without the SDK, the way a provider in
// another language is (go-plugin's side of the protocol by hand), that gets one thing wrong on
// purpose: which one its executable's name says, mailintake-auth-<mode>. As
// mailintake-auth-good it gets nothing wrong. The tests of authplugintest and of the server's
// plugin host build it under several names.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mailintake/mailintake/plugins/authplugin/authpluginv1"
)

// The modes, by executable name.
const (
	good         = "good"         // nothing wrong
	future       = "future"       // speaks protocol version 99
	garbage      = "garbage"      // prints a banner instead of the handshake line
	nocert       = "nocert"       // no certificate in the handshake line
	ipcert       = "ipcert"       // a certificate for 127.0.0.1, not localhost
	cncert       = "cncert"       // a certificate with only a common name
	nohealth     = "nohealth"     // no grpc.health.v1 service
	notserving   = "notserving"   // health NOT_SERVING for "plugin"
	nocontroller = "nocontroller" // no plugin.GRPCController
	nostdio      = "nostdio"      // no plugin.GRPCStdio
	untyped      = "untyped"      // errors without their authplugin.v1.Error detail
	chatty       = "chatty"       // writes to stdout after the handshake line
	slow         = "slow"         // Describe takes 3 s
	badfields    = "badfields"    // a description with invalid fields
	anyclient    = "anyclient"    // accepts any client certificate
	misnamed     = "misnamed"     // Describe names another provider
	mismatch     = "mismatch"     // a google.rpc.Status whose code is not the call's
)

var mode string

func main() {
	mode = strings.TrimPrefix(filepath.Base(os.Args[0]), "mailintake-auth-")
	if os.Getenv("MAILINTAKE_AUTH_PLUGIN") != "6c1f0b0e-provider-v1" {
		fmt.Fprintln(os.Stderr, "this is a mailintake auth provider: the server runs it")
		os.Exit(1)
	}
	if mode == garbage {
		fmt.Println("badprovider starting up")
		time.Sleep(30 * time.Second)
		return
	}
	cert, der, err := certificate()
	if err != nil {
		fail(err)
	}
	clients := x509.NewCertPool()
	clients.AppendCertsFromPEM([]byte(os.Getenv("PLUGIN_CLIENT_CERT")))
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients, MinVersion: tls.VersionTLS12}
	if mode == anyclient {
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	if mode != nohealth {
		h := health.NewServer()
		st := grpc_health_v1.HealthCheckResponse_SERVING
		if mode == notserving {
			st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
		}
		h.SetServingStatus("plugin", st)
		grpc_health_v1.RegisterHealthServer(srv, h)
	}
	if mode != nocontroller {
		srv.RegisterService(&controllerDesc, srv)
	}
	if mode != nostdio {
		srv.RegisterService(&stdioDesc, nil)
	}
	authpluginv1.RegisterProviderServiceServer(srv, provider{})

	version := 1
	if mode == future {
		version = 99
	}
	line := fmt.Sprintf("1|%d|tcp|%s|grpc", version, lis.Addr())
	if mode != nocert {
		line += "|" + base64.RawStdEncoding.EncodeToString(der)
	}
	fmt.Println(line)
	if mode == chatty {
		fmt.Println("ready to serve")
	}
	go func() { // exit with the host
		parent := os.Getppid()
		for range time.Tick(time.Second) {
			if os.Getppid() != parent {
				os.Exit(0)
			}
		}
	}()
	if err := srv.Serve(lis); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, `{"@level":"error","@message":%q}`+"\n", err.Error())
	os.Exit(1)
}

// certificate makes the self-signed server certificate of the handshake line.
func certificate() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
	}
	switch mode {
	case ipcert:
		tmpl.Subject.CommonName = "127.0.0.1"
		tmpl.DNSNames = nil
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	case cncert:
		tmpl.DNSNames = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der, nil
}

// plugin.GRPCController (proto/third_party/hashicorp/go-plugin/grpc_controller.proto):
// Shutdown(Empty) returns (Empty). plugin.Empty and google.protobuf.Empty are the same bytes.
var controllerDesc = grpc.ServiceDesc{
	ServiceName: "plugin.GRPCController",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Shutdown",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&emptypb.Empty{}); err != nil {
				return nil, err
			}
			go func() {
				time.Sleep(10 * time.Millisecond)
				srv.(*grpc.Server).Stop()
				os.Exit(0)
			}()
			return &emptypb.Empty{}, nil
		},
	}},
}

// plugin.GRPCStdio (grpc_stdio.proto): StreamStdio(google.protobuf.Empty) returns (stream
// StdioData). Nothing to send: it holds the stream open.
var stdioDesc = grpc.ServiceDesc{
	ServiceName: "plugin.GRPCStdio",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "StreamStdio",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			<-stream.Context().Done()
			return nil
		},
	}},
}

type provider struct {
	authpluginv1.UnimplementedProviderServiceServer
}

func (provider) Describe(context.Context, *authpluginv1.DescribeRequest) (*authpluginv1.DescribeResponse, error) {
	if mode == slow {
		time.Sleep(3 * time.Second)
	}
	d := &authpluginv1.DescribeResponse{
		Name: mode, Version: "1.0.0", DisplayName: "Bad provider (" + mode + ")",
		Fields: []*authpluginv1.Field{
			{Name: "token", Label: "Token", Type: authpluginv1.FieldType_FIELD_TYPE_STRING, Required: true, Secret: true},
			{Name: "mechanism", Label: "Mechanism", Type: authpluginv1.FieldType_FIELD_TYPE_ENUM, Options: []string{"XOAUTH2", "OAUTHBEARER"}, DefaultValue: "XOAUTH2"},
		},
		SaslMechanisms: []string{"XOAUTH2", "OAUTHBEARER"},
		Protocols:      []string{"imap", "smtp"},
	}
	if mode == badfields {
		d.Fields = append(d.Fields,
			&authpluginv1.Field{Name: "Client ID", Type: authpluginv1.FieldType_FIELD_TYPE_STRING},
			&authpluginv1.Field{Name: "token", Type: authpluginv1.FieldType_FIELD_TYPE_STRING},
			&authpluginv1.Field{Name: "region", Type: authpluginv1.FieldType_FIELD_TYPE_ENUM},
			&authpluginv1.Field{Name: "flavour", Type: authpluginv1.FieldType_FIELD_TYPE_ENUM, Options: []string{"a", "b"}, DefaultValue: "c"},
			&authpluginv1.Field{Name: "colour", Type: authpluginv1.FieldType_FIELD_TYPE_STRING, Options: []string{"red"}},
			&authpluginv1.Field{Name: "api_key", Type: authpluginv1.FieldType_FIELD_TYPE_STRING, Secret: true, DefaultValue: "changeme"},
			&authpluginv1.Field{Name: "retries", Type: 42},
		)
		d.SaslMechanisms = append(d.SaslMechanisms, "CRAM-MD5")
	}
	if mode == misnamed {
		d.Name = "othername"
	}
	return d, nil
}

func (provider) ValidateConfig(_ context.Context, req *authpluginv1.ValidateConfigRequest) (*authpluginv1.ValidateConfigResponse, error) {
	resp := &authpluginv1.ValidateConfigResponse{}
	if req.GetAccount().GetSecrets()["token"] == "" {
		resp.Violations = append(resp.Violations, &authpluginv1.FieldViolation{Field: "token", Description: "is required"})
	}
	return resp, nil
}

func (provider) IssueCredential(ctx context.Context, req *authpluginv1.IssueCredentialRequest) (*authpluginv1.IssueCredentialResponse, error) {
	tok := req.GetAccount().GetSecrets()["token"]
	if tok == "" {
		if mode == untyped {
			return nil, status.Error(codes.FailedPrecondition, "no token")
		}
		if mode == mismatch {
			// The trailer by hand, as a provider in another language writes it, with the wrong code.
			detail, _ := anypb.New(&authpluginv1.Error{Reason: authpluginv1.Reason_REASON_CONFIG_INVALID, Message: "no token"})
			b, _ := proto.Marshal(&spb.Status{Code: int32(codes.Unavailable), Message: "no token", Details: []*anypb.Any{detail}})
			grpc.SetTrailer(ctx, metadata.Pairs("grpc-status-details-bin", string(b)))
			return nil, status.Error(codes.FailedPrecondition, "no token")
		}
		st, err := status.New(codes.FailedPrecondition, "configuration invalid: no token").WithDetails(&authpluginv1.Error{
			Reason: authpluginv1.Reason_REASON_CONFIG_INVALID, Message: "no token", Action: "Store a token for the mailbox.",
		})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return &authpluginv1.IssueCredentialResponse{Credential: &authpluginv1.Credential{
		Mechanism: "XOAUTH2", Identity: req.GetAccount().GetUsername(), Secret: tok,
	}}, nil
}
