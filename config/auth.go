package config

import (
	"strings"
)

// User is one `user "name"` of nats.authorization: who may connect to the embedded server. With any user
// configured the server requires one to connect. Either a password or an nkey (the user's public key, "U…"; the
// client signs with its seed).
//
// An admin may use every subject. Any other user may subscribe to the data subjects and to its own reply inbox
// _INBOX.{name}.> and publish nothing, unless Publish and Subscribe grant more (system.serverUsers turns this into
// nats-server permissions).
type User struct {
	Name           string
	Password       string
	NKey           string
	Admin          bool
	Publish        []string // subjects (wildcards allowed) a non-admin may publish to besides nothing
	Subscribe      []string // subjects a non-admin may subscribe to besides the defaults
	AllowResponses bool     // may reply once to each request it received (nats-server allow_responses)
}

type authorizationHCL struct {
	Users []userHCL `hcl:"user,block"`
}

type userHCL struct {
	Name     string  `hcl:"name,label"`
	Password *string `hcl:"password,optional"`
	NKey     *string `hcl:"nkey,optional"`
	Admin    *bool   `hcl:"admin,optional"`

	Publish        []string `hcl:"publish,optional"`
	Subscribe      []string `hcl:"subscribe,optional"`
	AllowResponses *bool    `hcl:"allow_responses,optional"`
}

func decodeAuthorization(v *Validator, h *authorizationHCL, n *NATS) {
	if h == nil {
		return
	}
	uv := v.Blocks("user")
	seen := map[string]bool{}
	for i, u := range h.Users {
		vv := v
		if i < len(uv) {
			vv = uv[i]
		}
		user := User{Name: u.Name}
		set(&user.Password, u.Password)
		set(&user.NKey, u.NKey)
		set(&user.Admin, u.Admin)
		set(&user.AllowResponses, u.AllowResponses)
		user.Publish, user.Subscribe = u.Publish, u.Subscribe
		switch err := ValidToken(u.Name); {
		case err != nil:
			vv.Errorf("", "the user name is the token of its reply inbox _INBOX.{name}: %v", err)
		case seen[u.Name]:
			vv.Errorf("", "user %s is declared twice", quote(u.Name))
		}
		seen[u.Name] = true
		switch {
		case user.Password == "" && user.NKey == "":
			vv.Errorf("", "user %s needs a password or an nkey", quote(u.Name))
		case user.Password != "" && user.NKey != "":
			vv.Errorf("nkey", "user %s: a password or an nkey, not both", quote(u.Name))
		case user.NKey != "" && (!strings.HasPrefix(user.NKey, "U") || len(user.NKey) != 56):
			vv.Errorf("nkey", "nkey %s is not a user public key (56 characters starting with U; `nk -gen user -pubout` makes one)", quote(user.NKey))
		case user.Password != "" && len(user.Password) < 8:
			vv.Errorf("password", "password of user %s is shorter than 8 characters", quote(u.Name))
		}
		checkGrants(vv, user)
		n.Users = append(n.Users, user)
	}
}

// checkGrants checks the subjects a user block widens its permissions with.
func checkGrants(v *Validator, u User) {
	if u.Admin {
		for _, attr := range []string{"publish", "subscribe", "allow_responses"} {
			if v.Has(attr) {
				v.Errorf(attr, "user %s is an admin, which may use every subject already; %s is for the other users", quote(u.Name), attr)
			}
		}
		return
	}
	check := func(attr string, list []string) {
		for i, s := range list {
			if err := ValidSubject(s, true); err != nil {
				v.ErrorfIndex(attr, i, "%v", err)
			}
		}
	}
	check("publish", u.Publish)
	check("subscribe", u.Subscribe)
}
