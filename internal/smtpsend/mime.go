package smtpsend

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"mime"
	"mime/quotedprintable"
	"path/filepath"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// entity is one MIME entity of a message being composed: a leaf with its (not yet encoded)
// body, or a multipart with its parts. The header holds only the Content-* fields.
type entity struct {
	header textproto.Header
	body   []byte
	parts  []*entity
	// boundary is a multipart's delimiter.
	boundary string
}

// textEntity is a text/plain or text/html part in UTF-8, quoted-printable: every line stays
// within 76 characters whatever the text, and line breaks become CRLF.
func textEntity(subtype, text string) *entity {
	e := &entity{body: []byte(text)}
	e.header.Set("Content-Type", mime.FormatMediaType("text/"+subtype, map[string]string{"charset": "utf-8"}))
	e.header.Set("Content-Transfer-Encoding", "quoted-printable")
	return e
}

// multipartEntity is a multipart/<subtype> of parts.
func multipartEntity(subtype string, parts ...*entity) *entity {
	var b [15]byte
	rand.Read(b[:])
	e := &entity{parts: parts, boundary: "=_" + hex.EncodeToString(b[:])}
	e.header.Set("Content-Type", mime.FormatMediaType("multipart/"+subtype, map[string]string{"boundary": e.boundary}))
	return e
}

// attachmentEntity is a file in base64: as an attachment, or inline (referred to by the HTML as
// cid:ContentID) when it has a Content-ID.
func attachmentEntity(a Attachment) *entity {
	ct := a.ContentType
	if ct == "" {
		ct = mime.TypeByExtension(strings.ToLower(filepath.Ext(a.Filename)))
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil || mediaType == "" {
		mediaType, params = "application/octet-stream", nil
	}
	if a.Filename != "" {
		if params == nil {
			params = map[string]string{}
		}
		params["name"] = a.Filename
	}
	e := &entity{body: a.Data}
	e.header.Set("Content-Type", mime.FormatMediaType(mediaType, params))
	e.header.Set("Content-Transfer-Encoding", "base64")
	disposition, dparams := "attachment", map[string]string{}
	if a.ContentID != "" {
		disposition = "inline"
		e.header.Set("Content-Id", "<"+a.ContentID+">")
	}
	if a.Filename != "" {
		dparams["filename"] = a.Filename
	}
	e.header.Set("Content-Disposition", mime.FormatMediaType(disposition, dparams))
	return e
}

// writeBody writes the entity's body (after its header): a multipart's parts with go-message's
// multipart writer, a leaf encoded by its Content-Transfer-Encoding.
func (e *entity) writeBody(w io.Writer) error {
	if e.boundary != "" {
		mw := textproto.NewMultipartWriter(w)
		if err := mw.SetBoundary(e.boundary); err != nil {
			return err
		}
		for _, p := range e.parts {
			pw, err := mw.CreatePart(p.header)
			if err != nil {
				return err
			}
			if err := p.writeBody(pw); err != nil {
				return err
			}
		}
		return mw.Close()
	}
	if e.header.Get("Content-Transfer-Encoding") == "base64" {
		return writeBase64(w, e.body)
	}
	qw := quotedprintable.NewWriter(w)
	if _, err := qw.Write(e.body); err != nil {
		return err
	}
	return qw.Close()
}

// writeBase64 writes data in base64 lines of 76 characters (RFC 2045).
func writeBase64(w io.Writer, data []byte) error {
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(data)))
	base64.StdEncoding.Encode(enc, data)
	for len(enc) > 0 {
		n := min(76, len(enc))
		if _, err := w.Write(enc[:n]); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\r\n"); err != nil {
			return err
		}
		enc = enc[n:]
	}
	return nil
}
