package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/store"
)

// TokenPrefix starts every API token: mit_<id>_<secret>.
const TokenPrefix = "mit_"

// Principal is the caller of an RPC, from its bearer token.
type Principal struct {
	TokenID string
	Tenant  string // empty for the admin
	Admin   bool
}

// canSee reports whether the principal may see a resource of tenant.
func (p Principal) canSee(tenant string) bool { return p.Admin || p.Tenant == tenant }

type principalKey struct{}
type requestIDKey struct{}

// PrincipalFrom returns the caller of the current RPC.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewToken creates and stores a token and returns its value, which is never stored.
func NewToken(ctx context.Context, st store.Store, name, tenant string, admin bool, now time.Time, ttl time.Duration) (*store.Token, string, error) {
	var idb [8]byte
	var secret [32]byte
	rand.Read(idb[:])
	rand.Read(secret[:])
	id := hex.EncodeToString(idb[:])
	value := TokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(value))
	t := &store.Token{ID: id, Name: name, Tenant: tenant, Admin: admin, Hash: sum[:], CreateTime: now}
	if ttl > 0 {
		t.ExpireTime = now.Add(ttl)
	}
	if err := st.CreateToken(ctx, t); err != nil {
		return nil, "", err
	}
	return t, value, nil
}

var errBadToken = errors.New("invalid API token")

// VerifyToken returns the principal of a token value.
func VerifyToken(ctx context.Context, st store.Store, value string, now time.Time) (Principal, error) {
	rest, ok := strings.CutPrefix(value, TokenPrefix)
	if !ok {
		return Principal{}, errBadToken
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 {
		return Principal{}, errBadToken
	}
	t, err := st.TokenByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, errBadToken
	}
	if err != nil {
		return Principal{}, err
	}
	sum := sha256.Sum256([]byte(value))
	if subtle.ConstantTimeCompare(sum[:], t.Hash) != 1 {
		return Principal{}, errBadToken
	}
	if !t.RevokeTime.IsZero() {
		return Principal{}, fmt.Errorf("%w: revoked", errBadToken)
	}
	if !t.ExpireTime.IsZero() && !now.Before(t.ExpireTime) {
		return Principal{}, fmt.Errorf("%w: it expired at %s; ask the admin for a new one", errBadToken, t.ExpireTime.UTC().Format(time.RFC3339))
	}
	return Principal{TokenID: t.ID, Tenant: t.Tenant, Admin: t.Admin}, nil
}

// publicMethods need no token.
func publicMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}

// authenticate reads the bearer token of an incoming RPC.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	ctx = context.WithValue(ctx, requestIDKey{}, newRequestID())
	if publicMethod(method) {
		return ctx, nil
	}
	if replicaMethod(method) {
		// Only other replicas: an API token, even the admin's, is not accepted here.
		return s.authenticateReplica(ctx)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return ctx, status.Error(codes.Unauthenticated, "missing API token: send the header 'authorization: Bearer <token>' (the admin token is in <data-dir>/admin.token)")
	}
	value, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		value, ok = strings.CutPrefix(vals[0], "bearer ")
	}
	if !ok {
		return ctx, status.Error(codes.Unauthenticated, "the authorization header must be 'Bearer <token>'")
	}
	p, err := VerifyToken(ctx, s.store, strings.TrimSpace(value), s.now())
	if errors.Is(err, errBadToken) {
		return ctx, status.Error(codes.Unauthenticated, err.Error())
	}
	if err != nil {
		return ctx, toStatus(ctx, s.log, method, err)
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// UnaryInterceptor authenticates, maps errors to statuses and logs each RPC.
func (s *Server) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx, err := s.authenticate(ctx, info.FullMethod)
	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
		s.noteStore(err)
		err = toStatus(ctx, s.log, info.FullMethod, err)
	}
	s.logRPC(ctx, info.FullMethod, start, err)
	return resp, err
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// StreamInterceptor is UnaryInterceptor for streaming RPCs.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		s.noteStore(err)
		err = toStatus(ctx, s.log, info.FullMethod, err)
	}
	s.logRPC(ctx, info.FullMethod, start, err)
	return err
}

func (s *Server) logRPC(ctx context.Context, method string, start time.Time, err error) {
	if publicMethod(method) {
		return
	}
	code := status.Code(err)
	level := slog.LevelDebug
	if code == codes.Internal || code == codes.Unavailable {
		level = slog.LevelWarn
	}
	p, _ := PrincipalFrom(ctx)
	s.log.Log(ctx, level, "rpc", "method", method, "code", code.String(), "duration", time.Since(start),
		"request_id", requestID(ctx), "token_id", p.TokenID)
}

// caller returns the principal; the interceptor guarantees one on every non-public RPC.
func caller(ctx context.Context) Principal {
	p, _ := PrincipalFrom(ctx)
	return p
}

// requireAdmin fails unless the caller holds the admin token.
func requireAdmin(ctx context.Context) error {
	if !caller(ctx).Admin {
		return permission("this call needs the admin token")
	}
	return nil
}
