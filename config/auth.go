package config

import (
	"strings"
)

// User is one `user "name"` of nats.authorization: who may connect to the embedded server. With any user
// configured the server requires one to connect; only admin users may use iot.control.> (hot-add, faults,
// reload). Either a password or an nkey (the user's public key, "U…"; the client signs with its seed).
type User struct {
	Name     string
	Password string
	NKey     string
	Admin    bool
}

type authorizationHCL struct {
	Users []userHCL `hcl:"user,block"`
}

type userHCL struct {
	Name     string  `hcl:"name,label"`
	Password *string `hcl:"password,optional"`
	NKey     *string `hcl:"nkey,optional"`
	Admin    *bool   `hcl:"admin,optional"`
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
		switch {
		case u.Name == "" || strings.ContainsAny(u.Name, " \t\r\n"):
			vv.Errorf("", "a user name must not be empty or contain spaces")
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
		n.Users = append(n.Users, user)
	}
}
