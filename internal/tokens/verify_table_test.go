package tokens_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// TestVerifySignedJSON: tokens validly signed by the keyring whose JSON is
// hostile. Each row would be accepted (or read differently) by a verifier
// that trusted the token's alg, honoured duplicate or case-folded members,
// ignored crit, or decoded base64 leniently.
func TestVerifySignedJSON(t *testing.T) {
	t.Parallel()
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256, jwa.EdDSA} {
		k := newKeyring(t, alg)
		ref := mint(t, k, grant(alg), subject).AccessToken
		hdr, _, _ := parts(t, ref)
		kid := hdr["kid"].(string)
		v := verifierAt(k, now0.Add(time.Minute))
		iat := now0.Unix()
		hd := func(extra string) string {
			return fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"at+jwt"%s}`, alg.String(), kid, extra)
		}
		const claims = `"iss":"https://auth.example.com","aud":["app"],"sid":"s1","name":"guest_1","tag":"guest-user","is_anonymous":true`
		pl := func(extra string) string {
			return fmt.Sprintf(`{"sub":"user-1","exp":%d,"iat":%d,"nbf":%d,%s%s}`, iat+3600, iat, iat, claims, extra)
		}
		rows := []struct {
			name, header, payload, reason string // reason "" = accepted
		}{
			{"control", hd(""), pl(""), ""},
			{"aud as one string", hd(""), strings.Replace(pl(""), `["app"]`, `"app"`, 1), ""},
			{"unknown claims", hd(""), pl(`,"x":1,"X":2,"y":{"sub":"a","SUB":"b"}`), ""},
			{"unknown claim with a duplicate inside", hd(""), pl(`,"x":1,"y":{"sub":"a","sub":"b"}`), tokens.ReasonMalformed},
			{"fractional exp", hd(""), strings.Replace(pl(""), fmt.Sprint(iat+3600), fmt.Sprint(iat+3600)+".5", 1), ""},
			{"alg none", fmt.Sprintf(`{"alg":"none","kid":%q,"typ":"at+jwt"}`, kid), pl(""), tokens.ReasonSignature},
			{"alg HS256", fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"at+jwt"}`, kid), pl(""), tokens.ReasonSignature},
			{"alg missing", fmt.Sprintf(`{"kid":%q,"typ":"at+jwt"}`, kid), pl(""), tokens.ReasonSignature},
			{"typ JWT", fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"JWT"}`, alg.String(), kid), pl(""), tokens.ReasonSignature},
			{"typ missing", fmt.Sprintf(`{"alg":%q,"kid":%q}`, alg.String(), kid), pl(""), tokens.ReasonSignature},
			{"kid unknown", fmt.Sprintf(`{"alg":%q,"kid":"nope","typ":"at+jwt"}`, alg.String()), pl(""), tokens.ReasonSignature},
			{"crit", hd(`,"crit":["exp"],"exp":1`), pl(""), tokens.ReasonSignature},
			{"crit empty", hd(`,"crit":[]`), pl(""), tokens.ReasonSignature},
			{"header duplicate alg", `{"alg":"none",` + hd("")[1:], pl(""), tokens.ReasonMalformed},
			{"header duplicate kid", hd(`,"kid":"other"`), pl(""), tokens.ReasonMalformed},
			{"header duplicate typ", hd(`,"typ":"at+jwt"`), pl(""), tokens.ReasonMalformed},
			{"header case-folded alg", hd(`,"ALG":"none"`), pl(""), tokens.ReasonMalformed},
			{"header case-folded typ", hd(`,"Typ":"JWT"`), pl(""), tokens.ReasonMalformed},
			{"header case-folded crit", hd(`,"CRIT":["exp"]`), pl(""), tokens.ReasonMalformed},
			{"header duplicate in jwk", hd(`,"jwk":{"kty":"EC","kty":"RSA"}`), pl(""), tokens.ReasonMalformed},
			{"header b64", hd(`,"b64":false`), pl(""), tokens.ReasonSignature},
			{"header invalid UTF-8", hd(",\"x\":\"\xff\""), pl(""), tokens.ReasonMalformed},
			{"header duplicate unknown", hd(`,"x":1,"x":2`), pl(""), tokens.ReasonMalformed},
			{"header array", `["alg"]`, pl(""), tokens.ReasonMalformed},
			{"header not JSON", `{"alg":`, pl(""), tokens.ReasonMalformed},
			{"payload duplicate sub", hd(""), pl(`,"sub":"admin"`), tokens.ReasonMalformed},
			{"payload duplicate escaped sub", hd(""), pl(`,"s\u0075b":"admin"`), tokens.ReasonMalformed},
			{"payload duplicate tag", hd(""), pl(`,"tag":"normal-user"`), tokens.ReasonMalformed},
			{"payload duplicate exp", hd(""), pl(`,"exp":99999999999`), tokens.ReasonMalformed},
			{"payload case-folded sub", hd(""), pl(`,"SUB":"admin"`), tokens.ReasonMalformed},
			{"payload case-folded tag", hd(""), pl(`,"Tag":"normal-user"`), tokens.ReasonMalformed},
			{"payload case-folded exp", hd(""), pl(`,"EXP":99999999999`), tokens.ReasonMalformed},
			{"payload long s sub", hd(""), pl(`,"ſub":"admin"`), tokens.ReasonMalformed},
			{"payload invalid UTF-8", hd(""), pl(",\"x\":\"\xff\""), tokens.ReasonMalformed},
			{"payload lone surrogate", hd(""), pl(`,"x":"\ud800"`), tokens.ReasonMalformed},
			{"payload duplicate unknown", hd(""), pl(`,"x":1,"x":2`), tokens.ReasonMalformed},
			{"payload array", hd(""), `[1]`, tokens.ReasonMalformed},
			{"payload null", hd(""), `null`, tokens.ReasonMalformed},
			{"payload not JSON", hd(""), pl("")[:20], tokens.ReasonMalformed},
			{"exp as string", hd(""), strings.Replace(pl(""), fmt.Sprintf(`"exp":%d`, iat+3600), `"exp":"soon"`, 1), tokens.ReasonClaims},
			{"exp missing", hd(""), strings.Replace(pl(""), fmt.Sprintf(`"exp":%d,`, iat+3600), ``, 1), tokens.ReasonClaims},
			{"exp absurd", hd(""), strings.Replace(pl(""), fmt.Sprintf(`"exp":%d`, iat+3600), `"exp":1e300`, 1), tokens.ReasonClaims},
			{"iat in the future", hd(""), strings.Replace(pl(""), fmt.Sprintf(`"iat":%d`, iat), fmt.Sprintf(`"iat":%d`, iat+3000), 1), tokens.ReasonClaims},
			{"is_anonymous missing", hd(""), strings.Replace(pl(""), `,"is_anonymous":true`, ``, 1), tokens.ReasonClaims},
			{"name missing", hd(""), strings.Replace(pl(""), `,"name":"guest_1"`, ``, 1), tokens.ReasonClaims},
			{"iss missing", hd(""), strings.Replace(pl(""), `"iss":"https://auth.example.com",`, ``, 1), tokens.ReasonIssuer},
			{"aud missing", hd(""), strings.Replace(pl(""), `"aud":["app"],`, ``, 1), tokens.ReasonAudience},
		}
		for _, r := range rows {
			t.Run(alg.String()+"/"+r.name, func(t *testing.T) {
				tok, err := k.SignJSON(alg, r.header, r.payload)
				if err != nil {
					t.Fatal(err)
				}
				c, err := v.Verify(tok, issuer)
				if r.reason == "" {
					if err != nil || c.Subject != "user-1" || c.Tag != "guest-user" || !c.Anonymous {
						t.Fatalf("refused or misread: %+v, %v", c, err)
					}
					return
				}
				wantInvalid(t, c, err, r.reason)
			})
		}

		// Encodings of the control token other than its one canonical form.
		good, _ := k.SignJSON(alg, hd(""), pl(""))
		if _, err := v.Verify(good, issuer); err != nil {
			t.Fatal(err)
		}
		p := strings.Split(good, ".")
		last := p[2][len(p[2])-1]
		tweaked := byte('A')
		if last == 'A' {
			tweaked = 'B'
		}
		for name, tok := range map[string]string{
			"extra segment":     good + ".x",
			"empty extra":       good + ".",
			"padding":           p[0] + "=." + p[1] + "." + p[2],
			"newline":           p[0] + "\n." + p[1] + "." + p[2],
			"CR in signature":   p[0] + "." + p[1] + "." + p[2][:10] + "\r" + p[2][10:],
			"std alphabet":      strings.NewReplacer("-", "+", "_", "/").Replace(good),
			"space":             " " + good,
			"signature cut":     p[0] + "." + p[1] + "." + p[2][:len(p[2])-4],
			"trailing bits":     p[0] + "." + p[1] + "." + p[2][:len(p[2])-1] + string(tweaked),
			"signature doubled": good + p[2],
			"header only":       p[0],
			"no signature":      p[0] + "." + p[1],
		} {
			if tok == good {
				continue
			}
			c, err := v.Verify(tok, issuer)
			if err == nil {
				t.Errorf("%s/%s: accepted %q", alg, name, tok)
				continue
			}
			wantInvalid(t, c, err, "")
		}
	}
}
