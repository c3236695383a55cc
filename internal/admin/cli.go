package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/guestauth/caddy-guestauth/storage/bolt"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
)

// Command is `caddy guest-auth`, for caddycmd.RegisterCommand: its
// subcommands call the admin routes of a running Caddy (migrate alone
// works on the database directly).
func Command() caddycmd.Command {
	return caddycmd.Command{
		Name:  "guest-auth",
		Usage: "<command> [<args>] [--address <listen>] [--config <path> [--adapter <name>]] [--storage <path>]",
		Short: "Manages guest_auth users of a running Caddy",
		Long: `
Manages the users of guest_auth through the admin API of a running Caddy.

  users [--tag guest-user|normal-user] [--after <id>] [--limit <n>]
                       list users, a page at a time (pass the answer's
                       "next" as --after to get the next page)
  user <id>            show one user (never its password hash)
  delete <id>          delete a user with its sessions
  keep <id> [--unset]  mark a guest kept: it never expires (--unset: unmark)
  revoke <id>          end all the user's sessions (its tokens stop working)
  prune [--dry-run]    run one guest expiry sweep now, with the config's
                       guest_ttl (--dry-run: only report)
  stats                user, guest and session counts, file size
  backup --output <file> [--force]
                       save a consistent copy of the bbolt file, taken while
                       Caddy keeps serving; an existing file is only
                       replaced with --force (PostgreSQL storage: an export
                       of the store as JSON lines; use pg_dump for the
                       database itself)
  rotate-keys          make a new signing key for the config's signing_alg:
                       it signs from now on (on every instance sharing a
                       PostgreSQL store within 30s); older keys still
                       verify the tokens they signed
  migrate [--dsn-env <VAR>]
                       create or migrate the PostgreSQL schema of the
                       database whose connection string is in the
                       environment variable VAR (default
                       GUEST_AUTH_DATABASE_URL); needs no running Caddy

Results are printed to stdout as JSON. The admin API is found at
'` + caddy.DefaultAdminListen + `' unless --address is given, or --config
(with --adapter) names the config whose admin address to use. When the
running config uses several guest_auth storage files, choose one with
--storage, written as in the config.`,
		CobraFunc: func(cmd *cobra.Command) {
			pf := cmd.PersistentFlags()
			pf.String("address", "", "Address of the administration API listener (if --config is not used)")
			pf.StringP("config", "c", "", "Configuration file (if --address is not used)")
			pf.StringP("adapter", "a", "", "Name of config adapter to apply (if --config is used)")
			pf.String("storage", "", "guest_auth storage file, as written in the config (when it uses several)")
			// Without this, a mistyped subcommand would print help and succeed.
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown guest-auth command %q (see caddy guest-auth --help)", args[0])
				}
				return cmd.Help()
			}
			for _, sub := range guestAuthCommands() {
				cmd.AddCommand(sub)
			}
		},
	}
}

func guestAuthCommands() []*cobra.Command {
	users := &cobra.Command{
		Use:   "users [--tag guest-user|normal-user] [--after <id>] [--limit <n>]",
		Short: "Lists users, a page at a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for _, name := range []string{"tag", "after"} {
				if v, _ := cmd.Flags().GetString(name); v != "" {
					q.Set(name, v)
				}
			}
			if n, _ := cmd.Flags().GetInt("limit"); n != 0 {
				q.Set("limit", strconv.Itoa(n))
			}
			return adminPrint(cmd, http.MethodGet, "users", q, nil)
		},
	}
	users.Flags().String("tag", "", "Only users with this tag: guest-user or normal-user")
	users.Flags().String("after", "", "Start after this user id (the previous page's \"next\")")
	users.Flags().Int("limit", 0, "Users per page (default 100, at most 1000)")

	user := &cobra.Command{
		Use:   "user <id>",
		Short: "Shows one user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminPrint(cmd, http.MethodGet, "users/"+url.PathEscape(args[0]), nil, nil)
		},
	}

	del := &cobra.Command{
		Use:   "delete <id>",
		Short: "Deletes a user with its sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminPrint(cmd, http.MethodDelete, "users/"+url.PathEscape(args[0]), nil, nil)
		},
	}

	keep := &cobra.Command{
		Use:   "keep <id> [--unset]",
		Short: "Marks a guest kept, so it never expires",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			unset, _ := cmd.Flags().GetBool("unset")
			return adminPrint(cmd, http.MethodPost, "users/"+url.PathEscape(args[0])+"/keep", nil, map[string]bool{"kept": !unset})
		},
	}
	keep.Flags().Bool("unset", false, "Remove the mark: the guest may expire again")

	revoke := &cobra.Command{
		Use:   "revoke <id>",
		Short: "Ends all sessions of a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminPrint(cmd, http.MethodPost, "users/"+url.PathEscape(args[0])+"/revoke", nil, nil)
		},
	}

	prune := &cobra.Command{
		Use:   "prune [--dry-run]",
		Short: "Runs one guest expiry sweep now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dry, _ := cmd.Flags().GetBool("dry-run")
			return adminPrint(cmd, http.MethodPost, "prune", url.Values{"dry_run": {strconv.FormatBool(dry)}}, nil)
		},
	}
	prune.Flags().Bool("dry-run", false, "Only report the guests that would be deleted")

	rotate := &cobra.Command{
		Use:   "rotate-keys",
		Short: "Makes a new signing key; older keys still verify the tokens they signed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return adminPrint(cmd, http.MethodPost, "keys/rotate", nil, nil)
		},
	}

	stats := &cobra.Command{
		Use:   "stats",
		Short: "Shows user, guest and session counts and the file size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return adminPrint(cmd, http.MethodGet, "stats", nil, nil)
		},
	}

	backup := &cobra.Command{
		Use:   "backup --output <file> [--force]",
		Short: "Saves a consistent copy of the storage file",
		Args:  cobra.NoArgs,
		RunE:  runBackup,
	}
	backup.Flags().StringP("output", "o", "", "File to write the copy to (required)")
	backup.Flags().Bool("force", false, "Replace the output file if it exists")

	migrate := &cobra.Command{
		Use:   "migrate [--dsn-env <VAR>]",
		Short: "Creates or migrates the PostgreSQL schema (no running Caddy needed)",
		Args:  cobra.NoArgs,
		RunE:  runMigrate,
	}
	migrate.Flags().String("dsn-env", "GUEST_AUTH_DATABASE_URL", "Environment variable holding the connection string (never passed on the command line, where other users could read it)")

	cmds := []*cobra.Command{users, user, del, keep, revoke, prune, stats, backup, migrate, rotate}
	for _, c := range cmds {
		c.SilenceUsage = true // a server error is not a usage error
	}
	return cmds
}

// adminCall sends one request to the guest_auth admin routes, with the
// address and storage flags.
func adminCall(cmd *cobra.Command, method, route string, q url.Values, body any) (*http.Response, error) {
	fl := cmd.Flags()
	addr, _ := fl.GetString("address")
	cfg, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	adminAddr, err := caddycmd.DetermineAdminAPIAddress(addr, nil, cfg, adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin API address: %w", err)
	}
	if q == nil {
		q = url.Values{}
	}
	if st, _ := fl.GetString("storage"); st != "" {
		q.Set("storage", st)
	}
	uri := adminBase + route
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(adminAddr, method, uri, make(http.Header), rd)
	if err != nil {
		return nil, adminCallError(adminAddr, err)
	}
	return resp, nil
}

// adminCallError turns AdminAPIRequest's "caddy responded with error:
// HTTP 404: {"error":"..."}" into "HTTP 404: ...".
func adminCallError(addr string, err error) error {
	msg := err.Error()
	const prefix = "caddy responded with error: "
	if !strings.HasPrefix(msg, prefix) {
		return fmt.Errorf("calling the admin API at %s (is Caddy running?): %w", addr, err)
	}
	msg = strings.TrimPrefix(msg, prefix)
	if status, raw, ok := strings.Cut(msg, ": "); ok {
		var body struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(raw), &body) == nil && body.Error != "" {
			return fmt.Errorf("%s: %s", status, body.Error)
		}
	}
	return errors.New(msg)
}

// adminPrint makes the call and prints its JSON answer, indented.
func adminPrint(cmd *cobra.Command, method, route string, q url.Values, body any) error {
	resp, err := adminCall(cmd, method, route, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return printIndented(cmd.OutOrStdout(), raw)
}

func printIndented(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// runBackup downloads the copy next to the output file and renames it into
// place, so the output is either absent or complete.
func runBackup(cmd *cobra.Command, _ []string) error {
	out, _ := cmd.Flags().GetString("output")
	force, _ := cmd.Flags().GetBool("force")
	if out == "" {
		return errors.New("--output is required")
	}
	if !force {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("%s exists; use --force to replace it", out)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	resp, err := adminCall(cmd, http.MethodGet, "backup", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	dir := filepath.Dir(out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".tmp-*") // mode 0600: the copy holds keys
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, resp.Body)
	if err != nil {
		return fmt.Errorf("downloading the backup: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("backup incomplete: got %d of %d bytes", n, resp.ContentLength)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := checkBackup(tmp.Name()); err != nil {
		return err
	}
	if err := placeFile(tmp.Name(), out, force); err != nil {
		return err
	}
	done = true
	if d, err := os.Open(dir); err == nil { // make the rename durable
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("syncing %s: %w", dir, err)
		}
	}
	abs, _ := filepath.Abs(out)
	summary, _ := json.Marshal(map[string]any{"output": abs, "bytes": n})
	return printIndented(cmd.OutOrStdout(), summary)
}

// placeFile moves tmp to out; without force it never replaces an existing
// file, even one created during the download.
func placeFile(tmp, out string, force bool) error {
	if force {
		return os.Rename(tmp, out)
	}
	err := os.Link(tmp, out)
	switch {
	case err == nil:
		return os.Remove(tmp)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s exists; use --force to replace it", out)
	}
	// No hard links on this file system: check, then rename.
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists; use --force to replace it", out)
	}
	return os.Rename(tmp, out)
}

// checkBackup checks a downloaded copy: a bbolt file, or the JSON-lines
// export of a PostgreSQL store (its first line names the format).
func checkBackup(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	line, _ := bufio.NewReader(io.LimitReader(f, 1<<16)).ReadBytes('\n')
	f.Close()
	if len(line) > 0 && line[0] == '{' {
		var head struct {
			Format string `json:"format"`
		}
		if json.Unmarshal(line, &head) != nil || head.Format != postgres.ExportFormat {
			return fmt.Errorf("the downloaded export does not start with a %s header", postgres.ExportFormat)
		}
		return nil
	}
	if err := bolt.CheckFile(path); err != nil {
		return fmt.Errorf("the downloaded copy is not a usable bbolt file: %w", err)
	}
	return nil
}

// runMigrate migrates the schema of the database named in the environment.
func runMigrate(cmd *cobra.Command, _ []string) error {
	env, _ := cmd.Flags().GetString("dsn-env")
	dsn := os.Getenv(env)
	if dsn == "" {
		return fmt.Errorf("the environment variable %s is empty: set it to the PostgreSQL connection string", env)
	}
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, 10*time.Minute)
	defer cancel()
	from, to, err := postgres.Migrate(ctx, dsn)
	if err != nil {
		return err
	}
	summary, _ := json.Marshal(map[string]any{"database": postgres.DescribeDSN(dsn), "from_version": from, "to_version": to})
	return printIndented(cmd.OutOrStdout(), summary)
}
