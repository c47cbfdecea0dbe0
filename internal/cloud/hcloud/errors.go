package hcloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// providerError carries a sentence a person can act on while keeping the
// underlying error reachable for errors.Is and errors.As.
type providerError struct {
	msg string
	err error
}

func (e *providerError) Error() string { return e.msg }
func (e *providerError) Unwrap() error { return e.err }

// explain turns an error from hcloud-go into "op: what happened: what to do".
func explain(op string, err error) error {
	if err == nil {
		return nil
	}
	return &providerError{msg: op + ": " + sentence(err), err: err}
}

// serverErr is explain for calls on one server: a server that vanished
// meanwhile becomes lease.ErrServerNotFound.
func serverErr(op string, err error) error {
	if hc.IsError(err, hc.ErrorCodeNotFound) {
		return fmt.Errorf("%s: %w", op, lease.ErrServerNotFound)
	}
	return explain(op, err)
}

func sentence(err error) string {
	var apiErr hc.Error
	if errors.As(err, &apiErr) {
		return apiSentence(apiErr)
	}
	var actErr hc.ActionError
	if errors.As(err, &actErr) {
		return actionSentence(actErr.Action(), actErr.Code, actErr.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "gave up waiting for the Hetzner API (" + err.Error() + ")"
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	if errors.Is(err, hc.ErrStatusCode) {
		return "the Hetzner API answered with an unexpected error (" + err.Error() + "): try again later"
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return "cannot reach the Hetzner API (" + err.Error() + "): check the network and the API endpoint"
	}
	return err.Error()
}

func apiSentence(e hc.Error) string {
	status := ""
	if resp := e.Response(); resp != nil && resp.Response != nil {
		status = fmt.Sprintf(" (%d)", resp.StatusCode)
	}
	msg := strings.TrimSuffix(e.Message, ".")
	switch e.Code {
	case hc.ErrorCodeUnauthorized:
		return "the Hetzner API refused the token" + status + ": check HCLOUD_TOKEN"
	case hc.ErrorCodeForbidden:
		return "the Hetzner API token may not do this" + status + ": use a token with read & write permission"
	case hc.ErrorCodeRateLimitExceeded:
		return "the Hetzner API rate limit is used up" + status + ": wait a few minutes and try again"
	case hc.ErrorCodeResourceLimitExceeded:
		return "the Hetzner project has reached its limit (" + msg + "): delete servers, snapshots or keys it no longer needs, or ask Hetzner to raise the project's limits (Hetzner Console, Limits)"
	case hc.ErrorCodeResourceUnavailable, hc.ErrorCodePlacementError:
		return "Hetzner has no room for this server right now (" + msg + "): try again later, or list more server types or locations in --server-type and --location"
	case hc.ErrorCodeInvalidServerType:
		return "Hetzner will not use this server type (" + msg + "): it does not fit or is deprecated; choose another --server-type (gateway preflight shows what is on sale)"
	case hc.ErrorCodeInvalidInput:
		return "the Hetzner API rejected the request: " + msg + invalidFields(e) + ": check the gateway's server type, location and image settings"
	case hc.ErrorCodeLocked:
		return "the server is busy with another action" + status + ": try again in a moment"
	case hc.ErrorCodeNotFound:
		return "not found at Hetzner (" + msg + ")"
	case hc.ErrorCodeMaintenance, hc.ErrorCodeServiceError, hc.ErrorCodeServerError,
		hc.ErrorCodeBadGateway, hc.ErrorCodeTimeout, hc.ErrorCodeUnknownError:
		return "the Hetzner API is having trouble (" + msg + ", " + string(e.Code) + status + "): try again later"
	default:
		return "the Hetzner API said: " + msg + " (" + string(e.Code) + status + ")"
	}
}

func invalidFields(e hc.Error) string {
	details, ok := e.Details.(hc.ErrorDetailsInvalidInput)
	if !ok || len(details.Fields) == 0 {
		return ""
	}
	var parts []string
	for _, f := range details.Fields {
		parts = append(parts, f.Name+": "+strings.Join(f.Messages, "; "))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func actionSentence(a *hc.Action, code, message string) string {
	command := "an action"
	if a != nil && a.Command != "" {
		command = "action " + a.Command
	}
	return fmt.Sprintf("Hetzner reports that %s failed: %s (%s)", command, message, code)
}
