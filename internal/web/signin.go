package web

import (
	"context"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/web/apiconn"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// signInView is the sign-in form. The token typed is never written back into it.
type signInView struct {
	Error string
}

func (*signInView) title() string { return "Sign in" }

// home is the mailbox list, or the sign-in form until signed in.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	s := h.sessions.Get(r)
	if s == nil {
		h.render(w, r, nil, http.StatusOK, "signin", &signInView{})
		return
	}
	h.mailboxList(w, r, s)
}

// signIn checks the token with the API and starts a session: a token the API refuses is
// refused here after a delay (against guessing); the admin token is told from a tenant's by
// whether it may list tokens.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		h.render(w, r, nil, http.StatusBadRequest, "signin", &signInView{Error: "Enter an API token: the admin token is in the server's data directory (admin.token); a tenant token comes from 'mailintake token create'."})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.CallTimeout)
	defer cancel()
	ctx = apiconn.WithToken(ctx, token)
	list, err := h.mailboxes.ListMailboxes(ctx, &mailintakev1.ListMailboxesRequest{PageSize: 1})
	if err != nil {
		st, _ := status.FromError(err)
		if st.Code() == codes.Unauthenticated {
			h.log.Warn("web sign-in refused", "remote", r.RemoteAddr, "reason", st.Message())
			select {
			case <-time.After(h.opts.SignInDelay):
			case <-r.Context().Done():
			}
			h.render(w, r, nil, http.StatusUnauthorized, "signin", &signInView{Error: "That token was not accepted: " + st.Message() + "."})
			return
		}
		h.render(w, r, nil, http.StatusServiceUnavailable, "signin", &signInView{Error: "The server could not check the token: " + st.Message()})
		return
	}
	_, err = h.tokens.ListTokens(ctx, &mailintakev1.ListTokensRequest{})
	admin := err == nil
	if err != nil && status.Code(err) != codes.PermissionDenied {
		h.render(w, r, nil, http.StatusServiceUnavailable, "signin", &signInView{Error: "The server could not check the token: " + status.Convert(err).Message()})
		return
	}
	// A sign-in replaces the browser's earlier session, if any.
	if old := h.sessions.Get(r); old != nil {
		h.sessions.End(w, old)
	}
	s := &session{Token: token, Admin: admin, TokenID: tokenID(token), Data: newState()}
	if !admin && len(list.GetMailboxes()) > 0 {
		s.Tenant = list.GetMailboxes()[0].GetTenant()
	}
	h.sessions.Create(w, s)
	h.log.Info("web sign-in", "token_id", s.TokenID, "admin", admin, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// tokenID is the id part of a token value (mit_<id>_<secret>), for display.
func tokenID(token string) string {
	rest, ok := strings.CutPrefix(token, "mit_")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "_")
	return id
}

// signOut ends the session.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	s := h.sessions.Get(r)
	h.sessions.End(w, s)
	if s != nil {
		h.log.Info("web sign-out", "token_id", s.TokenID)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
