// composecheck validates docker-compose files with compose-go, the loader Docker Compose itself uses:
// schema validation, interpolation, merging and normalisation. Usage: composecheck FILE [FILE...]
// (later files override earlier ones, as with `docker compose -f a -f b`). Prints the service names;
// exits 0 when valid, 1 when not.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck FILE [FILE...]")
		os.Exit(2)
	}
	var paths []string
	for _, arg := range os.Args[1:] {
		path, err := filepath.Abs(arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		paths = append(paths, path)
	}
	opts, err := cli.NewProjectOptions(
		paths,
		cli.WithWorkingDirectory(filepath.Dir(paths[0])),
		cli.WithOsEnv,
		cli.WithName("vidsearch"),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "invalid:", err)
		os.Exit(1)
	}
	for _, name := range project.ServiceNames() {
		fmt.Println(name)
	}
}
