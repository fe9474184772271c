package web

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailintake/mailintake/internal/outbox"
	mbsession "github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/web/mailboxform"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxRow is one line of the mailbox list.
type mailboxRow struct {
	Mailbox  *mailintakev1.Mailbox
	Server   string
	State    stateView
	LastSync *timeView
	Token    string
	// TokenWarnings are the token's (under Token); Warnings the mailbox's status warnings,
	// sending trouble among them (under State).
	TokenWarnings []string
	Warnings      []string
	Counts        *mailintakev1.MessageCounts
	LastError     string
	StatusError   string
}

type listView struct {
	Rows     []mailboxRow
	Admin    bool
	Next     string // the next page's token
	Paged    bool
	Empty    bool
	Tenant   string
	Problems []string
}

func (*listView) title() string { return "Mailboxes" }

// mailboxList is the list of the mailboxes the token sees, each with its live status.
func (h *Handler) mailboxList(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	pageToken := r.URL.Query().Get("page")
	resp, err := h.mailboxes.ListMailboxes(ctx, &mailintakev1.ListMailboxesRequest{PageSize: 50, PageToken: pageToken})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	v := &listView{Admin: s.Admin, Next: resp.GetNextPageToken(), Paged: pageToken != "", Empty: len(resp.GetMailboxes()) == 0, Tenant: s.Tenant}
	v.Rows = make([]mailboxRow, len(resp.GetMailboxes()))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, mb := range resp.GetMailboxes() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			row := mailboxRow{Mailbox: mb, Server: serverOf(mb)}
			st, err := h.mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
			if err != nil {
				row.StatusError = status.Convert(err).Message()
			} else {
				fillRow(&row, st.GetStatus())
			}
			v.Rows[i] = row
		}()
	}
	wg.Wait()
	h.render(w, r, s, http.StatusOK, "mailboxes", v)
}

func fillRow(row *mailboxRow, st *mailintakev1.MailboxStatus) {
	row.State = stateOf(st)
	row.LastSync = when(st.GetLastSyncTime())
	row.Token, row.TokenWarnings = tokenHealth(st)
	row.Warnings = st.GetWarnings()
	row.Counts = st.GetCounts()
	if row.Counts == nil {
		row.Counts = &mailintakev1.MessageCounts{}
	}
	row.LastError = lastError(st)
}

// liveView is the part of a mailbox's page that refreshes by itself: status and event log.
type liveView struct {
	ID        string
	Row       mailboxRow
	Status    *mailintakev1.MailboxStatus
	StateTime *timeView
	ErrorTime *timeView
	NextRetry *timeView
	Events    []eventView
	Poll      bool
}

type eventView struct {
	Time    *timeView
	First   *timeView
	Kind    string
	Message string
	Count   int32
}

type mailboxView struct {
	Mailbox  *mailintakev1.Mailbox
	Protocol string // IMAP or POP3
	Server   string
	// PollInterval is how often a POP3 mailbox is polled ("" for IMAP).
	PollInterval string
	// Submission is the outgoing mail server ("" when none is set).
	Submission  string
	AfterAck    string
	StartFrom   string
	Config      [][2]string
	Live        *liveView
	Quarantine  []quarantineView
	Checklist   *checklistView
	Interactive bool
	Admin       bool
}

func (v *mailboxView) title() string { return displayName(v.Mailbox) }
func (v *mailboxView) refresh() int  { return v.Checklist.refresh() }

func displayName(mb *mailintakev1.Mailbox) string {
	if mb.GetDisplayName() != "" {
		return mb.GetDisplayName()
	}
	return mb.GetUsername()
}

type quarantineView struct {
	Q       *mailintakev1.QuarantinedMessage
	From    string
	Created *timeView
	Held    bool
}

// live reads a mailbox's status and recent events.
func (h *Handler) live(ctx context.Context, mb *mailintakev1.Mailbox) (*liveView, error) {
	st, err := h.mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
	if err != nil {
		return nil, err
	}
	v := &liveView{ID: mb.GetId(), Status: st.GetStatus(), Poll: true}
	v.Row = mailboxRow{Mailbox: mb, Server: serverOf(mb)}
	fillRow(&v.Row, st.GetStatus())
	v.StateTime = when(st.GetStatus().GetStateTime())
	v.ErrorTime = when(st.GetStatus().GetLastErrorTime())
	v.NextRetry = when(st.GetStatus().GetNextRetryTime())
	evs, err := h.mailboxes.ListMailboxEvents(ctx, &mailintakev1.ListMailboxEventsRequest{MailboxId: mb.GetId(), PageSize: 50})
	if err != nil {
		return nil, err
	}
	for _, e := range evs.GetEvents() {
		ev := eventView{Time: when(e.GetTime()), Kind: e.GetKind(), Message: e.GetMessage(), Count: e.GetCount()}
		if e.GetCount() > 1 {
			ev.First = when(e.GetFirstTime())
		}
		v.Events = append(v.Events, ev)
	}
	return v, nil
}

// mailboxPage is a mailbox's page: status, settings, quarantine and event log.
func (h *Handler) mailboxPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	mb := got.GetMailbox()
	v := &mailboxView{Mailbox: mb, Server: serverOf(mb), AfterAck: afterAckWords(mb.GetAfterAck()), StartFrom: startFromWords(mb.GetStartFrom()), Admin: s.Admin,
		Protocol: "IMAP", Submission: submissionOf(mb)}
	if mb.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		v.Protocol, v.PollInterval = "POP3", mailboxform.FormatDuration(mbsession.DefaultPOP3PollInterval)
		if d := mb.GetPollInterval(); d != nil {
			v.PollInterval = mailboxform.FormatDuration(d.AsDuration())
		}
	}
	for _, k := range sortedKeys(mb.GetAuthConfig()) {
		v.Config = append(v.Config, [2]string{k, mb.GetAuthConfig()[k]})
	}
	if v.Live, err = h.live(ctx, mb); err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	q, err := h.messages.ListQuarantinedMessages(ctx, &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	for _, m := range q.GetMessages() {
		qv := quarantineView{Q: m, Created: when(m.GetCreateTime()), Held: m.GetState() == mailintakev1.QuarantineState_QUARANTINE_STATE_HELD}
		if len(m.GetFrom()) > 0 {
			qv.From = m.GetFrom()[0].GetAddress()
			if n := m.GetFrom()[0].GetName(); n != "" {
				qv.From = n + " <" + qv.From + ">"
			}
		}
		v.Quarantine = append(v.Quarantine, qv)
	}
	if provs, err := h.providers.ListAuthProviders(ctx, &mailintakev1.ListAuthProvidersRequest{}); err == nil {
		for _, p := range provs.GetProviders() {
			if p.GetName() == mb.GetAuthProvider() {
				v.Interactive = p.GetInteractive()
			}
		}
	}
	if run := s.Data.run(r.URL.Query().Get("test"), id); run != nil {
		v.Checklist = run.view(v.Interactive)
	}
	h.render(w, r, s, http.StatusOK, "mailbox", v)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mailboxLive is the refreshing part of a mailbox's page, for htmx.
func (h *Handler) mailboxLive(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if !isHTMX(r) {
		h.redirect(w, r, "/mailboxes/"+url.PathEscape(id))
		return
	}
	ctx, cancel := h.call(r, s)
	defer cancel()
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	v, err := h.live(ctx, got.GetMailbox())
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	h.fragment(w, "live", v)
}

// formView is the add and edit form.
type formView struct {
	Form      *mailboxform.Form
	Admin     bool
	Draft     string
	Checklist *checklistView
	Mailbox   *mailintakev1.Mailbox
}

func (v *formView) title() string {
	if v.Form.ID == "" {
		return "Add a mailbox"
	}
	return "Edit " + displayName(v.Mailbox)
}

func (v *formView) refresh() int { return v.Checklist.refresh() }

// nav marks "Add a mailbox" current on the add form only.
func (v *formView) nav() string {
	if v.Form.ID == "" {
		return "form"
	}
	return ""
}

// F returns one of the form's own inputs, for the template.
func (v *formView) F(name string) mailboxform.Field { return v.Form.Field(name) }

func (h *Handler) listProviders(ctx context.Context) ([]*mailintakev1.AuthProvider, error) {
	resp, err := h.providers.ListAuthProviders(ctx, &mailintakev1.ListAuthProvidersRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetProviders(), nil
}

// newMailbox is the empty add form.
func (h *Handler) newMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	provs, err := h.listProviders(ctx)
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	f := mailboxform.New(provs)
	if p := r.URL.Query().Get("auth_provider"); p != "" {
		f.WithProvider(p)
	}
	h.render(w, r, s, http.StatusOK, "form", &formView{Form: f, Admin: s.Admin, Draft: randomID()})
}

// providerFields is the form's provider part for another sign-in method, for htmx.
func (h *Handler) providerFields(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	provs, err := h.listProviders(ctx)
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	f := mailboxform.New(provs)
	if id := r.URL.Query().Get("mailbox"); id != "" {
		got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
		if err != nil {
			h.apiFailed(w, r, s, err)
			return
		}
		f = mailboxform.Edit(got.GetMailbox(), provs)
		if r.URL.Query().Get(mailboxform.AuthProvider) != got.GetMailbox().GetAuthProvider() {
			// Another provider's stored secrets mean nothing to this one.
			f.Held = map[string]string{}
		}
	}
	f.WithProvider(r.URL.Query().Get(mailboxform.AuthProvider))
	if d := s.Data.draft(r.URL.Query().Get("draft")); d != nil && d.provider == f.Values[mailboxform.AuthProvider] {
		for k := range d.secrets {
			f.Held[k] = "entered"
		}
	}
	if !isHTMX(r) {
		h.redirect(w, r, "/mailboxes/new?auth_provider="+url.QueryEscape(f.Values[mailboxform.AuthProvider]))
		return
	}
	h.fragment(w, "provider_fields", f)
}

// draft returns a form's kept secrets, or nil.
func (s *state) draft(id string) *draft {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drafts[id]
}

// keep merges the secrets typed into a form (for provider) with those kept from its earlier
// submissions, and keeps the result for the next one. Secrets of another provider are dropped.
func (s *state) keep(id, provider string, typed map[string]string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" {
		return typed
	}
	d := s.drafts[id]
	if d == nil || d.provider != provider {
		d = &draft{provider: provider, secrets: map[string]string{}}
	}
	for k, v := range typed {
		d.secrets[k] = v
	}
	d.at = time.Now()
	s.drafts[id] = d
	for k, o := range s.drafts {
		if time.Since(o.at) > time.Hour {
			delete(s.drafts, k)
		}
	}
	for len(s.drafts) > 16 {
		var oldest string
		for k, o := range s.drafts {
			if oldest == "" || o.at.Before(s.drafts[oldest].at) {
				oldest = k
			}
		}
		delete(s.drafts, oldest)
	}
	out := map[string]string{}
	for k, v := range d.secrets {
		out[k] = v
	}
	return out
}

func (s *state) dropDraft(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.drafts, id)
}

// submitted reads a posted form into f and returns the mailbox and the secrets to send (typed
// now or kept from an earlier try), marking kept ones held.
func (h *Handler) submitted(r *http.Request, s *session, f *mailboxform.Form) (*mailboxform.Submission, string) {
	sub := f.Read(r.PostForm)
	draftID := r.PostForm.Get("draft")
	if draftID == "" {
		draftID = randomID()
	}
	sub.Secrets = s.Data.keep(draftID, sub.Mailbox.GetAuthProvider(), sub.Secrets)
	// Only the chosen provider's secret fields travel.
	for k := range sub.Secrets {
		ok := false
		for _, pf := range f.Provider.GetFields() {
			ok = ok || (pf.GetSecret() && pf.GetName() == k)
		}
		if !ok {
			delete(sub.Secrets, k)
		}
	}
	for k := range sub.Secrets {
		f.Held[k] = "entered"
	}
	return sub, draftID
}

// formFailed puts an API error on the form: field violations next to their inputs, anything
// else at its top. It returns the status to answer with, or 0 when the error is not the
// form's to show (the caller shows it as a page).
func formFailed(f *mailboxform.Form, err error) int {
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument:
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				f.AddViolations(br.GetFieldViolations())
			}
		}
		if !f.Invalid() {
			f.Problems = append(f.Problems, st.Message())
		}
		return http.StatusUnprocessableEntity
	case codes.PermissionDenied, codes.FailedPrecondition, codes.AlreadyExists:
		f.Problems = append(f.Problems, st.Message())
		return http.StatusUnprocessableEntity
	}
	return 0
}

// createMailbox saves a new mailbox, then tests its connection (Save and Test). A form with
// errors comes back with each error next to its input, the secrets typed kept on the server.
func (h *Handler) createMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	provs, err := h.listProviders(ctx)
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	f := mailboxform.New(provs)
	f.Values = map[string]string{}
	sub, draftID := h.submitted(r, s, f)
	v := &formView{Form: f, Admin: s.Admin, Draft: draftID}
	if r.PostForm.Get("action") == "provider" {
		h.render(w, r, s, http.StatusOK, "form", v)
		return
	}
	if f.Invalid() {
		h.render(w, r, s, http.StatusUnprocessableEntity, "form", v)
		return
	}
	if !s.Admin {
		sub.Mailbox.Tenant = ""
	}
	sub.Mailbox.AuthSecrets = sub.Secrets
	resp, err := h.mailboxes.CreateMailbox(ctx, &mailintakev1.CreateMailboxRequest{Mailbox: sub.Mailbox})
	if err != nil {
		if code := formFailed(f, err); code != 0 {
			h.render(w, r, s, code, "form", v)
			return
		}
		h.apiFailed(w, r, s, err)
		return
	}
	s.Data.dropDraft(draftID)
	mb := resp.GetMailbox()
	h.log.Info("web: mailbox created", "mailbox_id", mb.GetId(), "token_id", s.TokenID)
	run := h.startTest(s, mb.GetId(), outbox.SendingOn(mb))
	s.Data.addFlash("Saved “"+displayName(mb)+"”. Testing the connection…", false)
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(mb.GetId())+"/edit?test="+run+"#checklist")
}

// editMailbox is the edit form, with the checklist of the Save and Test that led here.
func (h *Handler) editMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	provs, err := h.listProviders(ctx)
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	f := mailboxform.Edit(got.GetMailbox(), provs)
	v := &formView{Form: f, Admin: s.Admin, Draft: randomID(), Mailbox: got.GetMailbox()}
	if run := s.Data.run(r.URL.Query().Get("test"), id); run != nil {
		v.Checklist = run.view(f.Provider.GetInteractive())
	}
	h.render(w, r, s, http.StatusOK, "form", v)
}

// updateMailbox saves an edited mailbox, then tests its connection (Save and Test). Secret
// inputs left empty keep the stored secrets.
func (h *Handler) updateMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	provs, err := h.listProviders(ctx)
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	cur := got.GetMailbox()
	f := mailboxform.Edit(cur, provs)
	if r.PostForm.Get(mailboxform.AuthProvider) != cur.GetAuthProvider() {
		f.Held = map[string]string{}
	}
	sub, draftID := h.submitted(r, s, f)
	v := &formView{Form: f, Admin: s.Admin, Draft: draftID, Mailbox: cur}
	if r.PostForm.Get("action") == "provider" {
		h.render(w, r, s, http.StatusOK, "form", v)
		return
	}
	if f.Invalid() {
		h.render(w, r, s, http.StatusUnprocessableEntity, "form", v)
		return
	}
	mb := sub.Mailbox
	mb.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: mb.GetLimits().GetMaxMessageBytes(),
		MaxInlineAttachmentBytes: cur.GetLimits().GetMaxInlineAttachmentBytes()}
	mb.AuthSecrets = sub.Secrets
	updated, err := h.mailboxes.UpdateMailbox(ctx, &mailintakev1.UpdateMailboxRequest{Mailbox: mb,
		UpdateMask: &fieldmaskpb.FieldMask{Paths: mailboxform.UpdateMask(len(sub.Secrets) > 0)}})
	if err != nil {
		if code := formFailed(f, err); code != 0 {
			h.render(w, r, s, code, "form", v)
			return
		}
		h.apiFailed(w, r, s, err)
		return
	}
	s.Data.dropDraft(draftID)
	run := h.startTest(s, id, outbox.SendingOn(updated.GetMailbox()))
	s.Data.addFlash("Saved. Testing the connection…", false)
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(id)+"/edit?test="+run+"#checklist")
}

// testMailbox runs a connection test of a saved mailbox.
func (h *Handler) testMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	run := h.startTest(s, id, outbox.SendingOn(got.GetMailbox()))
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(id)+"?test="+run+"#checklist")
}

// setEnabled enables or disables a mailbox.
func (h *Handler) setEnabled(w http.ResponseWriter, r *http.Request, s *session, enabled bool) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	resp, err := h.mailboxes.UpdateMailbox(ctx, &mailintakev1.UpdateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Id: id, Enabled: enabled},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"enabled"}}})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	if enabled {
		s.Data.addFlash("Enabled “"+displayName(resp.GetMailbox())+"”: it connects now.", false)
	} else {
		s.Data.addFlash("Disabled “"+displayName(resp.GetMailbox())+"”: no mail is fetched until it is enabled again.", false)
	}
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(id))
}

func (h *Handler) enableMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	h.setEnabled(w, r, s, true)
}

func (h *Handler) disableMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	h.setEnabled(w, r, s, false)
}

// confirmView asks before a change that is hard to undo.
type confirmView struct {
	Title    string
	Question string
	Details  []string
	Action   string // the form's URL
	Button   string
	Cancel   string
	Danger   bool
}

func (c *confirmView) title() string { return c.Title }

// confirmMailbox shows a confirmation about a mailbox the token sees.
func (h *Handler) confirmMailbox(w http.ResponseWriter, r *http.Request, s *session, build func(mb *mailintakev1.Mailbox) *confirmView) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: r.PathValue("id")})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	h.render(w, r, s, http.StatusOK, "confirm", build(got.GetMailbox()))
}

func (h *Handler) confirmDisable(w http.ResponseWriter, r *http.Request, s *session) {
	h.confirmMailbox(w, r, s, func(mb *mailintakev1.Mailbox) *confirmView {
		return &confirmView{Title: "Disable " + displayName(mb), Question: "Disable the mailbox “" + displayName(mb) + "”?",
			Details: []string{"The server disconnects and fetches no mail from it until it is enabled again. Nothing is deleted."},
			Action:  "/mailboxes/" + mb.GetId() + "/disable", Button: "Disable", Cancel: "/mailboxes/" + mb.GetId()}
	})
}

func (h *Handler) confirmDelete(w http.ResponseWriter, r *http.Request, s *session) {
	h.confirmMailbox(w, r, s, func(mb *mailintakev1.Mailbox) *confirmView {
		return &confirmView{Title: "Delete " + displayName(mb), Question: "Delete the mailbox “" + displayName(mb) + "”?",
			Details: []string{"Its settings, stored password or tokens, event log and quarantine are removed. Mail on the mail server stays where it is.",
				"This cannot be undone."},
			Action: "/mailboxes/" + mb.GetId() + "/delete", Button: "Delete the mailbox", Cancel: "/mailboxes/" + mb.GetId(), Danger: true}
	})
}

func (h *Handler) deleteMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	if _, err := h.mailboxes.DeleteMailbox(ctx, &mailintakev1.DeleteMailboxRequest{Id: id}); err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	h.log.Info("web: mailbox deleted", "mailbox_id", id, "token_id", s.TokenID)
	s.Data.addFlash("Deleted “"+displayName(got.GetMailbox())+"”.", false)
	h.redirect(w, r, "/")
}

// replay delivers a quarantined message again.
func (h *Handler) replay(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	resp, err := h.messages.ReplayQuarantinedMessage(ctx, &mailintakev1.ReplayQuarantinedMessageRequest{Id: r.PathValue("qid")})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	subject := resp.GetMessage().GetSubject()
	if subject == "" {
		subject = "(no subject)"
	}
	s.Data.addFlash("“"+subject+"” will be delivered again.", false)
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(r.PathValue("id"))+"#quarantine")
}

func (h *Handler) confirmRelease(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	q, err := h.messages.ListQuarantinedMessages(ctx, &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	for _, m := range q.GetMessages() {
		if m.GetId() == r.PathValue("qid") {
			h.render(w, r, s, http.StatusOK, "confirm", &confirmView{Title: "Release a quarantined message",
				Question: "Release “" + m.GetSubject() + "” without delivering it?",
				Details: []string{"It is treated as acknowledged: the mailbox's after-ack action (e.g. mark as read, move or delete) is applied to it on the mail server, and it is never delivered.",
					"Held because: " + m.GetReason()},
				Action: "/mailboxes/" + id + "/quarantine/" + m.GetId() + "/release", Button: "Release", Cancel: "/mailboxes/" + id + "#quarantine", Danger: true})
			return
		}
	}
	h.errorPage(w, r, s, http.StatusNotFound, "Not found: no such quarantined message in this mailbox.")
}

func (h *Handler) release(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	if _, err := h.messages.ReleaseQuarantinedMessage(ctx, &mailintakev1.ReleaseQuarantinedMessageRequest{Id: r.PathValue("qid")}); err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	s.Data.addFlash("Released the message: it is treated as acknowledged.", false)
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(r.PathValue("id"))+"#quarantine")
}

// authorizeView is the device-code sign-in.
type authorizeView struct {
	Mailbox *mailintakev1.Mailbox
	Auth    *mailintakev1.Authorization
	State   string // none, pending, completed, failed, expired
	Expires *timeView
	Poll    bool
	Error   string
}

func (v *authorizeView) title() string { return "Sign in " + displayName(v.Mailbox) }
func (v *authorizeView) refresh() int {
	if v.Poll {
		return 3
	}
	return 0
}

func (h *Handler) authorization(ctx context.Context, mb *mailintakev1.Mailbox) (*authorizeView, error) {
	v := &authorizeView{Mailbox: mb, State: "none"}
	resp, err := h.providers.GetAuthorization(ctx, &mailintakev1.GetAuthorizationRequest{MailboxId: mb.GetId()})
	if status.Code(err) == codes.NotFound {
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	v.Auth = resp.GetAuthorization()
	v.State = strings.ToLower(strings.TrimPrefix(v.Auth.GetState().String(), "AUTHORIZATION_STATE_"))
	v.Expires = when(v.Auth.GetExpireTime())
	v.Poll = v.Auth.GetState() == mailintakev1.AuthorizationState_AUTHORIZATION_STATE_PENDING
	return v, nil
}

// authorizePage shows the device code and waits for the user to sign in; once they have, it
// moves on to the mailbox's page by itself.
func (h *Handler) authorizePage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: r.PathValue("id")})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	v, err := h.authorization(ctx, got.GetMailbox())
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	if v.State == "completed" && r.URL.Query().Get("wait") != "" {
		s.Data.addFlash("Signed in: the mailbox connects with the new sign-in.", false)
		h.redirect(w, r, "/mailboxes/"+url.PathEscape(got.GetMailbox().GetId()))
		return
	}
	h.render(w, r, s, http.StatusOK, "authorize", v)
}

// authorizeState is the refreshing part of the device-code page, for htmx.
func (h *Handler) authorizeState(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if !isHTMX(r) {
		h.redirect(w, r, "/mailboxes/"+url.PathEscape(id)+"/authorize")
		return
	}
	ctx, cancel := h.call(r, s)
	defer cancel()
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	v, err := h.authorization(ctx, got.GetMailbox())
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	if v.State == "completed" {
		s.Data.addFlash("Signed in: the mailbox connects with the new sign-in.", false)
		h.redirect(w, r, "/mailboxes/"+url.PathEscape(id))
		return
	}
	h.fragment(w, "authstate", v)
}

// beginAuthorization starts a device-code sign-in.
func (h *Handler) beginAuthorization(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := h.call(r, s)
	defer cancel()
	id := r.PathValue("id")
	got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		h.apiFailed(w, r, s, err)
		return
	}
	if _, err := h.providers.BeginAuthorization(ctx, &mailintakev1.BeginAuthorizationRequest{MailboxId: id}); err != nil {
		if st := status.Convert(err); st.Code() == codes.FailedPrecondition || st.Code() == codes.InvalidArgument {
			h.render(w, r, s, http.StatusConflict, "authorize", &authorizeView{Mailbox: got.GetMailbox(), State: "none", Error: st.Message()})
			return
		}
		h.apiFailed(w, r, s, err)
		return
	}
	h.redirect(w, r, "/mailboxes/"+url.PathEscape(id)+"/authorize?wait=1")
}
