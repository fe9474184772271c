package smtpsend_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailintake/mailintake/internal/smtpsend"
)

// A reply from a shared mailbox through Exchange Online: the delegate logs in with its token,
// the shared address is From and MAIL FROM. A refused cached token is retried once with a
// fresh one; an Unknown result is never resent.
func Example() {
	ctx := context.Background()
	out, err := smtpsend.Compose(smtpsend.Draft{
		From: "Support <support@contoso.example>", To: []string{"customer@example.org"}, Text: "It is fixed.",
		Reply: &smtpsend.Original{MessageID: "orig@example.org", Subject: "AW: Printer"},
	})
	if err != nil {
		return
	}
	target := smtpsend.Target{Host: "smtp.office365.com", Port: 587, Security: smtpsend.StartTLS}
	cred := smtpsend.Credential{Mechanism: smtpsend.MechXOAuth2, Identity: "agent@contoso.example", Secret: "<access token>"}
	res, err := smtpsend.Send(ctx, target, &cred, out.Envelope("ob_123"), out.Bytes)
	var ae *smtpsend.AuthError
	if errors.As(err, &ae) && ae.RetryWithFreshToken() {
		cred.Secret, cred.Fresh = "<a token issued now>", true
		res, err = smtpsend.Send(ctx, target, &cred, out.Envelope("ob_123"), out.Bytes)
	}
	switch smtpsend.KindOf(err) {
	case 0:
		fmt.Println("accepted as", res.QueueID, "with Message-ID", out.MessageID)
	case smtpsend.Temporary:
		fmt.Println("retry later:", err)
	case smtpsend.Permanent:
		fmt.Println("failed:", err)
	case smtpsend.Unknown:
		fmt.Println("may have been sent; never resend automatically:", err)
	}
}
