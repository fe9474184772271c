package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// tokensView is the admin's token page: a token just created (shown this once), the create
// form and the list.
type tokensView struct {
	Created  *mailintakev1.CreateTokenResponse
	Tokens   []tokenRow
	Revoked  bool
	Values   map[string]string
	Errors   map[string]string
	Problems []string
	TTLs     [][2]string
	Self     string
}

func (*tokensView) title() string { return "API tokens" }

type tokenRow struct {
	T       *mailintakev1.ApiToken
	Created *timeView
	Expires *timeView
	Revoked *timeView
}

// ttlChoices are the create form's lifetimes, in hours ("" is until revoked).
var ttlChoices = [][2]string{{"", "Until revoked"}, {"24", "1 day"}, {"720", "30 days"}, {"2160", "90 days"}, {"8760", "1 year"}}

// tokensPage lists the tokens (admin token only: the API refuses any other).
func (h *Handler) tokensPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := &tokensView{Revoked: r.URL.Query().Get("revoked") != "", Values: map[string]string{}, Errors: map[string]string{}, TTLs: ttlChoices}
	s.Data.mu.Lock()
	v.Created, s.Data.created = s.Data.created, nil
	s.Data.mu.Unlock()
	h.tokenList(w, r, s, http.StatusOK, v)
}

func (h *Handler) tokenList(w http.ResponseWriter, r *http.Request, s *session, code int, v *tokensView) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	resp, err := h.tokens.ListTokens(ctx, &mailintakev1.ListTokensRequest{IncludeRevoked: v.Revoked})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	v.Self = s.TokenID
	for _, t := range resp.GetTokens() {
		v.Tokens = append(v.Tokens, tokenRow{T: t, Created: when(t.GetCreateTime()), Expires: when(t.GetExpireTime()), Revoked: when(t.GetRevokeTime())})
	}
	h.render(w, r, s, code, "tokens", v)
}

// createToken creates a tenant token; its value is shown once, on the next tokens page.
func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	v := &tokensView{Values: map[string]string{"tenant": strings.TrimSpace(r.PostForm.Get("tenant")), "name": strings.TrimSpace(r.PostForm.Get("name")),
		"ttl": r.PostForm.Get("ttl")}, Errors: map[string]string{}, TTLs: ttlChoices}
	req := &mailintakev1.CreateTokenRequest{Tenant: v.Values["tenant"], Name: v.Values["name"]}
	if t := v.Values["ttl"]; t != "" {
		hours, err := strconv.Atoi(t)
		if err != nil || hours <= 0 {
			v.Errors["ttl"] = "choose one of the listed lifetimes"
			h.tokenList(w, r, s, http.StatusUnprocessableEntity, v)
			return
		}
		req.Ttl = durationpb.New(time.Duration(hours) * time.Hour)
	}
	ctx, cancel := h.call(r, s)
	defer cancel()
	resp, err := h.tokens.CreateToken(ctx, req)
	if err != nil {
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			h.apiFailed(w, r, s, err)
			return
		}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, fv := range br.GetFieldViolations() {
					if fv.GetField() == "tenant" || fv.GetField() == "name" || fv.GetField() == "ttl" {
						v.Errors[fv.GetField()] = fv.GetDescription()
					} else {
						v.Problems = append(v.Problems, fv.GetField()+": "+fv.GetDescription())
					}
				}
			}
		}
		if len(v.Errors) == 0 && len(v.Problems) == 0 {
			v.Problems = append(v.Problems, st.Message())
		}
		h.tokenList(w, r, s, http.StatusUnprocessableEntity, v)
		return
	}
	h.log.Info("web: token created", "token_id", resp.GetToken().GetId(), "tenant", resp.GetToken().GetTenant(), "by", s.TokenID)
	s.Data.mu.Lock()
	s.Data.created = resp
	s.Data.mu.Unlock()
	http.Redirect(w, r, "/tokens", http.StatusSeeOther)
}

func (h *Handler) confirmRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	resp, err := h.tokens.ListTokens(ctx, &mailintakev1.ListTokensRequest{})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	for _, t := range resp.GetTokens() {
		if t.GetId() == r.PathValue("id") {
			label := t.GetId()
			if t.GetName() != "" {
				label = t.GetName() + " (" + t.GetId() + ")"
			}
			h.render(w, r, s, http.StatusOK, "confirm", &confirmView{Title: "Revoke a token", Question: "Revoke the token " + label + " of tenant " + t.GetTenant() + "?",
				Details: []string{"It stops working at once: every program and every page signed in with it loses access. This cannot be undone."},
				Action:  "/tokens/" + t.GetId() + "/revoke", Button: "Revoke", Cancel: "/tokens", Danger: true})
			return
		}
	}
	h.errorPage(w, r, s, http.StatusNotFound, "Not found: no valid token with that id.")
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	if _, err := h.tokens.RevokeToken(ctx, &mailintakev1.RevokeTokenRequest{Id: id}); err != nil {
		if status.Code(err) == codes.InvalidArgument {
			h.errorPage(w, r, s, http.StatusBadRequest, "Not revoked: "+status.Convert(err).Message())
			return
		}
		h.apiFailed(w, r, s, err)
		return
	}
	h.sessions.EndToken(id)
	h.log.Info("web: token revoked", "token_id", id, "by", s.TokenID)
	s.Data.addFlash("Revoked the token "+id+".", false)
	http.Redirect(w, r, "/tokens", http.StatusSeeOther)
}
