// ocimage builds OCI images from plain directories and pushes them, with no container engine.
// It is the test node's image tool (tests/node/README.md): the pause image, the private test
// image and the operator's image (scripts/build-image.sh) are all made by it.
//
//	ocimage build   -rootfs DIR -o LAYOUT [-ref NAME] [-entrypoint JSON] [-cmd JSON]
//	                [-env K=V]... [-user UID:GID] [-workdir DIR] [-expose PORT/PROTO]...
//	                [-label K=V]... [-arch ARCH]
//	ocimage index   -o LAYOUT [-ref NAME] LAYOUT...       (one multi-platform index of the images)
//	ocimage push    -layout LAYOUT -ref HOST:PORT/REPO:TAG [-username U -password-env VAR]
//	ocimage archive -layout LAYOUT -ref NAME -o FILE.tar   (a tarball `ctr images import` reads)
//	ocimage digest  -layout LAYOUT                           (the digest of its image or index)
//
// The layer is reproducible: entries sorted, owned by 0:0, timestamps at the epoch, so the
// same directory always gives the same digest.
package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) < 2 {
		die(errors.New("usage: ocimage build|index|push|archive|digest [flags]"))
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "index":
		err = index(os.Args[2:])
	case "push":
		err = push(os.Args[2:])
	case "archive":
		err = archive(os.Args[2:])
	case "digest":
		err = digest(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		die(err)
	}
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "ocimage:", err)
	os.Exit(1)
}

// layerTar writes DIR as a reproducible tar stream.
func layerTar(root string, w io.Writer) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0).UTC()
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func jsonList(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("%q is not a JSON list of strings: %w", s, err)
	}
	return out, nil
}

func build(args []string) error {
	fl := flag.NewFlagSet("build", flag.ExitOnError)
	rootfs := fl.String("rootfs", "", "directory that becomes the image's only layer")
	out := fl.String("o", "", "OCI image layout directory to write (replaced)")
	ref := fl.String("ref", "", "name recorded in the layout's index (org.opencontainers.image.ref.name)")
	entrypoint := fl.String("entrypoint", "", `JSON list, e.g. ["/pause"]`)
	cmd := fl.String("cmd", "", `JSON list, e.g. ["run"]`)
	user := fl.String("user", "", "UID:GID")
	workdir := fl.String("workdir", "", "working directory")
	arch := fl.String("arch", runtime.GOARCH, "the binaries' architecture (GOARCH names: amd64, arm64)")
	var env, expose, labels multi
	fl.Var(&env, "env", "K=V (repeatable)")
	fl.Var(&expose, "expose", "PORT/PROTO (repeatable)")
	fl.Var(&labels, "label", "K=V (repeatable)")
	_ = fl.Parse(args)
	if *rootfs == "" || *out == "" {
		return errors.New("build: -rootfs and -o are required")
	}
	ep, err := jsonList(*entrypoint)
	if err != nil {
		return err
	}
	cm, err := jsonList(*cmd)
	if err != nil {
		return err
	}

	tmp, err := os.CreateTemp("", "ocimage-layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := layerTar(*rootfs, tmp); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(tmp.Name(), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: "ocimage build (regcred-operator tests)", Created: v1.Time{Time: time.Unix(0, 0).UTC()},
	}})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	// Without os/architecture containerd skips the manifest as not matching the platform.
	cf.OS, cf.Architecture = "linux", *arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint, cf.Config.Cmd = ep, cm
	cf.Config.Env = append([]string(nil), env...)
	cf.Config.User, cf.Config.WorkingDir = *user, *workdir
	if len(expose) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range expose {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(labels) > 0 {
		cf.Config.Labels = map[string]string{}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			cf.Config.Labels[k] = v
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}

	return writeLayout(*out, *ref, img, func(lp layout.Path, opts []layout.Option) error {
		return lp.AppendImage(img, opts...)
	})
}

// writeLayout replaces dir with an OCI layout that holds one manifest, what (appended by add),
// named ref when not empty, and prints its digest.
func writeLayout(dir, ref string, what interface{ Digest() (v1.Hash, error) },
	add func(layout.Path, []layout.Option) error) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
	}
	if err := add(lp, opts); err != nil {
		return err
	}
	d, err := what.Digest()
	if err != nil {
		return err
	}
	fmt.Println(d.String())
	return nil
}

// image reads the single image of an OCI layout written by build.
func image(dir string) (v1.Image, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("%s: expected one image, found %d", dir, len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

func push(args []string) error {
	fl := flag.NewFlagSet("push", flag.ExitOnError)
	dir := fl.String("layout", "", "OCI image layout directory")
	ref := fl.String("ref", "", "destination, e.g. 127.0.0.1:5000/private/app:1 or REPO@DIGEST")
	username := fl.String("username", "", "registry user (basic auth)")
	passwordEnv := fl.String("password-env", "", "environment variable holding the password")
	_ = fl.Parse(args)
	if *dir == "" || *ref == "" {
		return errors.New("push: -layout and -ref are required")
	}
	img, idx, err := manifest(*dir)
	if err != nil {
		return err
	}
	// HTTPS, except for loopback and private addresses (the test registries), which the
	// registry library speaks plain HTTP to by itself; never a token over HTTP to anything else.
	r, err := name.ParseReference(*ref)
	if err != nil {
		return err
	}
	// Without -username: the docker config (DOCKER_CONFIG, ~/.docker/config.json), as after
	// `docker login`.
	var auth authn.Authenticator = &authn.Basic{Username: *username, Password: os.Getenv(*passwordEnv)}
	if *username == "" {
		if auth, err = authn.DefaultKeychain.Resolve(r.Context()); err != nil {
			return err
		}
	}
	var d v1.Hash
	if idx != nil {
		err = remote.WriteIndex(r, idx, remote.WithAuth(auth))
		d, _ = idx.Digest()
	} else {
		err = remote.Write(r, img, remote.WithAuth(auth))
		d, _ = img.Digest()
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", r.Context().Name(), d)
	return nil
}

func archive(args []string) error {
	fl := flag.NewFlagSet("archive", flag.ExitOnError)
	dir := fl.String("layout", "", "OCI image layout directory")
	ref := fl.String("ref", "", "name:tag recorded in the tarball")
	out := fl.String("o", "", "tarball to write")
	_ = fl.Parse(args)
	if *dir == "" || *ref == "" || *out == "" {
		return errors.New("archive: -layout, -ref and -o are required")
	}
	img, err := image(*dir)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(*ref, name.Insecure)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(*out, tag, img)
}

func digest(args []string) error {
	fl := flag.NewFlagSet("digest", flag.ExitOnError)
	dir := fl.String("layout", "", "OCI image layout directory")
	_ = fl.Parse(args)
	img, idx, err := manifest(*dir)
	if err != nil {
		return err
	}
	var what interface{ Digest() (v1.Hash, error) } = img
	if idx != nil {
		what = idx
	}
	d, err := what.Digest()
	if err != nil {
		return err
	}
	fmt.Println(d.String())
	return nil
}

// manifest reads what a layout written by build or index holds: one image, or one index.
func manifest(dir string) (v1.Image, v1.ImageIndex, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, nil, err
	}
	outer, err := lp.ImageIndex()
	if err != nil {
		return nil, nil, err
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, nil, fmt.Errorf("%s: expected one manifest, found %d", dir, len(m.Manifests))
	}
	if m.Manifests[0].MediaType.IsIndex() {
		idx, err := outer.ImageIndex(m.Manifests[0].Digest)
		return nil, idx, err
	}
	img, err := outer.Image(m.Manifests[0].Digest)
	return img, nil, err
}

// index writes one multi-platform image index of the images of the given layouts, each under
// the platform its config names.
func index(args []string) error {
	fl := flag.NewFlagSet("index", flag.ExitOnError)
	out := fl.String("o", "", "OCI image layout directory to write (replaced)")
	ref := fl.String("ref", "", "name recorded in the layout's index (org.opencontainers.image.ref.name)")
	_ = fl.Parse(args)
	if *out == "" || fl.NArg() == 0 {
		return errors.New("index: -o and at least one image layout are required")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, dir := range fl.Args() {
		img, err := image(dir)
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
		}})
	}
	return writeLayout(*out, *ref, idx, func(lp layout.Path, opts []layout.Option) error {
		return lp.AppendIndex(idx, opts...)
	})
}
