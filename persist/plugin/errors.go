package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ruaft/ruaft/persist"
)

// errorDomain marks the ErrorInfo detail that carries a persist sentinel
// across the plugin boundary.
const errorDomain = "persist.ruaft.dev"

var sentinels = map[string]error{
	"CLOSED":         persist.ErrClosed,
	"NON_CONTIGUOUS": persist.ErrNonContiguous,
	"STALE_SNAPSHOT": persist.ErrStaleSnapshot,
	"CORRUPT":        persist.ErrCorrupt,
	"FAILED":         persist.ErrFailed,
	"UNAVAILABLE":    persist.ErrUnavailable,
}

// toStatus is the plugin side: a store error becomes a gRPC status whose
// ErrorInfo names the persist sentinel it matches, if any.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	for reason, s := range sentinels {
		if errors.Is(err, s) {
			st := status.New(codes.FailedPrecondition, err.Error())
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); derr == nil {
				return d.Err()
			}
			return st.Err()
		}
	}
	if errors.Is(err, context.Canceled) {
		code = codes.Canceled
	} else if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// remoteError is an error from the plugin: its text, matching the sentinel
// it carried.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// fromStatus is the host side: a gRPC error from a call named op becomes an
// error matching the persist sentinel it carries; transport failures (the
// plugin died or stopped answering) match persist.ErrUnavailable.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("persist/plugin: %s: %w: %w", op, persist.ErrUnavailable, err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			if s, ok := sentinels[info.Reason]; ok {
				return &remoteError{msg: st.Message(), sentinel: s}
			}
		}
	}
	switch st.Code() {
	case codes.Unknown, codes.Internal, codes.InvalidArgument:
		if st.Code() == codes.Internal && isTransport(st.Message()) {
			break
		}
		return fmt.Errorf("persist/plugin: %s: %s", op, st.Message())
	}
	return fmt.Errorf("persist/plugin: %s: %w: %s: %s", op, persist.ErrUnavailable, st.Code(), st.Message())
}

// isTransport reports whether an Internal status came from the transport
// rather than the store (a stream cut by a dying process).
func isTransport(msg string) bool {
	for _, s := range []string{"transport", "connection", "stream terminated", "EOF"} {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			return true
		}
	}
	return false
}
