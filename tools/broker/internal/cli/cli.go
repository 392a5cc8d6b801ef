// Package cli is the subcommand dispatch the broker's programs share:
// "PROGRAM COMMAND [flags]", usage on stderr and exit 2 for a bad command
// line, "PROGRAM: error" and exit 1 for a failed command.
package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Main runs the subcommand named by os.Args[1] and exits as described above.
func Main(program, usage string, commands map[string]func(args []string) error) {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch name := os.Args[1]; name {
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		run, ok := commands[name]
		if !ok {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		if err := run(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
			os.Exit(1)
		}
	}
}

// Flags is a subcommand's flag set, printing the program's usage on error.
func Flags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	return fs
}

// Strings is a repeatable string flag.
type Strings []string

func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set adds one value.
func (s *Strings) Set(v string) error {
	*s = append(*s, v)
	return nil
}
