package gateway

import (
	"errors"
	"fmt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Two kinds of error: a person sees one sentence they can act on and a
// short reference; the operator's log holds the whole chain under the same
// reference. The chain's hints for operators (check HCLOUD_TOKEN, an API
// endpoint, an address, a status code) never reach a terminal.

// personError is an error with the sentence a person is told instead of
// it; the error it wraps is for the log.
type personError struct {
	sentence string
	err      error
}

func (e *personError) Error() string { return e.sentence + ": " + e.err.Error() }
func (e *personError) Unwrap() error { return e.err }

// forPerson wraps err with the sentence a person is told instead of it.
func forPerson(err error, format string, args ...any) error {
	return &personError{sentence: fmt.Sprintf(format, args...), err: err}
}

// genericSentence is told for an error nobody worded for people.
const genericSentence = "the gateway could not do this"

// storeSentence is told whatever was asked when the lease database failed:
// nothing works until the operator repairs it.
const storeSentence = "the gateway's lease database has failed, so no machine can be started or changed until its operator repairs it"

// storeUnavailableSentence is told when the store cannot be reached for
// now (etcd without quorum): it passes without repair.
const storeUnavailableSentence = "the gateway's store is temporarily unavailable"

// tell returns the line a person is told for err. The lease domain's
// errors that are worded for people (an expired lease, a refused
// extension, a machine still being created) are told as they are;
// anything else is told as its personError's sentence with the next
// reference of t's connection, under which t's log gets the whole chain
// with attrs.
func (t *connTrace) tell(err error, attrs ...any) string {
	var (
		expired  *lease.ExpiredError
		extend   *lease.ExtendError
		creating *lease.CreatingError
	)
	switch {
	case errors.As(err, &expired):
		return expired.Error()
	case errors.As(err, &extend):
		return extend.Error()
	case errors.As(err, &creating):
		return creating.Error()
	}
	sentence := genericSentence
	var (
		pe    *personError
		claim *lease.ClaimError
	)
	switch {
	case errors.Is(err, lease.ErrStoreUnavailable):
		sentence = storeUnavailableSentence
	case errors.Is(err, lease.ErrStoreFailed):
		sentence = storeSentence
	case errors.As(err, &claim):
		// Worded by the domain, but the operator wants the chain too.
		sentence = claim.Sentence()
	case errors.As(err, &pe):
		sentence = pe.sentence
	}
	ref := t.nextRef()
	t.log.With(attrs...).Error("a person was told of an error", "ref", ref, "told", sentence, "err", err)
	return fmt.Sprintf("%s; try again in a few minutes, and if it keeps failing, tell the gateway's operator: ref %s", sentence, ref)
}
