package pages

// Passkeys on the pages: four JSON endpoints the script passkeys.js calls
// (begin and finish of a registration and of a sign-in), the script
// itself (same-origin, so the pages stay CSP-strict: script-src 'self',
// no inline script), and the account page's rename and remove forms.

import (
	"embed"
	"encoding/json"

	"net/http"
	"strconv"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

//go:embed passkeys.js
var passkeyScript embed.FS

// PagePasskey is a passkey as the account page lists it.
type PagePasskey struct {
	ID, Name            string
	CreatedAt, LastUsed time.Time
	Synced              bool // backed up by its provider (a synced passkey)
}

// passkeyRequest is the body the script posts to the finish endpoints.
type passkeyRequest struct {
	Handle     string          `json:"handle"`
	Name       string          `json:"name"`
	ReturnTo   string          `json:"return_to"`
	Credential json.RawMessage `json:"credential"`
}

// servePasskeys answers the script and the JSON endpoints; ok is false
// for a name that is neither.
func (p *Pages) servePasskeys(w http.ResponseWriter, r *http.Request, name string) (ok bool, err error) {
	if p.Passkeys == nil {
		return false, nil
	}
	h := w.Header()
	switch name {
	case "passkeys.js":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return true, nil
		}
		js, err := passkeyScript.ReadFile("passkeys.js")
		if err != nil {
			return true, err
		}
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "public, max-age=300")
		_, err = w.Write(js)
		return true, err
	case "passkeys/register/begin", "passkeys/register/finish", "passkeys/signin/begin", "passkeys/signin/finish":
	default:
		return false, nil
	}
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		h.Set("Allow", "POST")
		return true, jsonError(w, http.StatusMethodNotAllowed, "This method is not allowed here.")
	}
	if err := crossOrigin.Check(r); err != nil {
		return true, jsonError(w, http.StatusForbidden, "This request was sent from another site and was refused.")
	}
	protocol.SetReadDeadline(w, p.ReadTimeout, p.Logger)
	var req passkeyRequest
	body := http.MaxBytesReader(w, r.Body, accounts.MaxPasskeyResponse+4<<10)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		return true, jsonError(w, http.StatusBadRequest, "The request could not be read.")
	}
	id, err := p.Identity(w, r)
	if err != nil {
		return true, p.jsonFault(w, err)
	}
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	issuer, ip := p.Issuer(r), p.LimitKey(r)
	switch name {
	case "passkeys/register/begin":
		if id == nil {
			// The sign-up page of a visitor without a session: the
			// passkey is saved for a new guest (within the guest limits).
			login, err := p.createGuest(w, r)
			if err != nil {
				return true, p.jsonFault(w, err)
			}
			id = &accounts.Identity{User: login.User, Session: login.Session}
		}
		opts, handle, err := p.Passkeys.BeginRegistration(ctx, id, issuer, ip)
		if err != nil {
			return true, p.jsonFault(w, err)
		}
		return true, writeJSON(w, map[string]any{"handle": handle, "options": json.RawMessage(opts)})
	case "passkeys/register/finish":
		if id == nil {
			return true, jsonError(w, http.StatusUnauthorized, "Your session ended; reload the page.")
		}
		reg, err := p.Passkeys.FinishRegistration(ctx, id, issuer, req.Handle, req.Credential, req.Name)
		if reg != nil && reg.Login != nil {
			p.setSession(w, r, reg.Login)
		}
		if err != nil {
			return true, p.jsonFault(w, err)
		}
		return true, writeJSON(w, map[string]any{"redirect": p.Prefix + "account"})
	case "passkeys/signin/begin":
		opts, handle, err := p.Passkeys.BeginSignIn(ctx, issuer, ip)
		if err != nil {
			return true, p.jsonFault(w, err)
		}
		return true, writeJSON(w, map[string]any{"handle": handle, "options": json.RawMessage(opts)})
	default: // passkeys/signin/finish
		login, err := p.Passkeys.FinishSignIn(ctx, id, issuer, req.Handle, req.Credential)
		if err != nil {
			return true, p.jsonFault(w, err)
		}
		p.setSession(w, r, login)
		return true, writeJSON(w, map[string]any{"redirect": safeReturn(req.ReturnTo)})
	}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// jsonFault answers err as the pages' forms would, in JSON: the message
// the script shows, with the status (and Retry-After) of the page.
func (p *Pages) jsonFault(w http.ResponseWriter, err error) error {
	switch f := protocol.Classify(p.Logger, err, "passkeys"); f.Kind {
	case protocol.FailThrottled:
		protocol.SetRetryAfter(w, f)
		return jsonError(w, f.Status, "Too many attempts; try again in "+strconv.FormatInt(f.Retry, 10)+" seconds.")
	case protocol.FailUnavailable:
		protocol.SetRetryAfter(w, f)
		return jsonError(w, f.Status, f.Desc)
	case protocol.FailDomain:
		return jsonError(w, pageStatus(f.Code), f.Desc)
	case protocol.FailHTTP, protocol.FailToken, protocol.FailAuth:
		return jsonError(w, f.Status, f.Desc)
	default:
		return jsonError(w, http.StatusInternalServerError, "Something went wrong; try again.")
	}
}

// passkeyAction runs the account page's passkey forms (rename, remove).
func (p *Pages) passkeyAction(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	if p.Passkeys == nil {
		return p.formError(w, d, &accounts.Error{Code: accounts.CodeInvalidRequest, Description: "Passkeys are not enabled on this site."})
	}
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	credID := r.PostForm.Get("passkey")
	var err error
	if d.Action == "passkey_remove" {
		err = p.Passkeys.Remove(ctx, id, credID)
	} else {
		err = p.Passkeys.Rename(ctx, id, credID, r.PostForm.Get("passkey_name"))
	}
	if err != nil {
		if lerr := p.loadAccountLists(r, d, id); lerr != nil {
			return p.Fault(w, r, lerr, "listing the account's ways to sign in")
		}
		return p.formError(w, d, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.Prefix+"account", http.StatusSeeOther)
	return nil
}

// loadPasskeys fills the account page's list.
func (p *Pages) loadPasskeys(r *http.Request, d *PageData, id *accounts.Identity) error {
	if p.Passkeys == nil || id == nil {
		return nil
	}
	list, err := p.Passkeys.List(r.Context(), id)
	if err != nil {
		return err
	}
	d.PasskeyList = d.PasskeyList[:0]
	for _, pk := range list {
		var c struct {
			Credential struct {
				Flags struct {
					BackupState bool `json:"backupState"`
				} `json:"flags"`
			} `json:"credential"`
		}
		_ = json.Unmarshal(pk.Credential, &c) // only for the "synced" note
		d.PasskeyList = append(d.PasskeyList, PagePasskey{ID: pk.ID, Name: pk.Name, CreatedAt: pk.CreatedAt, LastUsed: pk.LastUsedAt, Synced: c.Credential.Flags.BackupState})
	}
	return nil
}
