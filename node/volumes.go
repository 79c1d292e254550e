package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// Pod volumes, materialised under <DataDir>/pods/<uid>/volumes/<name> as
// the kubelet does under its root directory:
//
//   - configMap, secret, projected and downwardAPI volumes are files written
//     from the assignment (which carries the ConfigMaps and Secrets the pod
//     references), atomically: the files live in a timestamped directory,
//     a "..data" symlink points at it and each top-level name is a symlink
//     through "..data", so swapping "..data" changes every file at once and
//     a reader never sees half an update. A changed assignment rewrites
//     them in running pods; containers mount them read-only. A subPath
//     mount binds the file as it was when the container was created, and
//     so does not follow updates, as in Kubernetes.
//   - emptyDir is a directory shared by the pod's containers (medium Memory:
//     a tmpfs), removed with the pod.
//   - hostPath binds a path of the node, checked or created by its type.
//   - persistentVolumeClaim is a named runtime volume called exactly the
//     claim's name; it outlives the pod and is never removed with it.

// LabelClaim marks a named volume made for a persistentVolumeClaim; its
// value is the claim's name.
const LabelClaim = "capstan.claim"

// ClaimVolumeName is the runtime volume of a persistentVolumeClaim: claims
// are namespaced, runtime volumes are not.
func ClaimVolumeName(namespace, claim string) string {
	return namespace + "_" + claim
}

// Names inside an atomically written volume directory.
const (
	dataLink    = "..data"
	dataTmpLink = "..data_tmp"
)

// defaultFileMode is the mode of projected files unless the volume or the
// item says otherwise (Kubernetes' 0644, secrets included).
const defaultFileMode = 0o644

// fileData is one file of a projected volume.
type fileData struct {
	data []byte
	mode fs.FileMode
}

func (d *Daemon) podDir(uid string) string { return filepath.Join(d.DataDir, "pods", uid) }

func (d *Daemon) volumeDir(uid, name string) string {
	return filepath.Join(d.podDir(uid), "volumes", name)
}

// isProjected reports whether the node writes a volume's files itself.
func isProjected(v *manifests.Volume) bool {
	return v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.DownwardAPI != nil
}

// safeName rejects a uid or volume name that could leave its directory.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`)
}

// validFilePath checks an item's path: relative, clean of "..", not
// starting with "..", as Kubernetes validates it.
func validFilePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case path.IsAbs(p):
		return fmt.Errorf("path %q must be relative", p)
	case strings.HasPrefix(p, ".."):
		return fmt.Errorf("path %q must not start with '..'", p)
	}
	for part := range strings.SplitSeq(p, "/") {
		if part == ".." {
			return fmt.Errorf("path %q must not contain '..'", p)
		}
	}
	return nil
}

func fileMode(item *int32, def fs.FileMode) fs.FileMode {
	if item != nil {
		return fs.FileMode(*item) & fs.ModePerm
	}
	return def
}

func defaultMode(m *int32) fs.FileMode { return fileMode(m, defaultFileMode) }

// addKeys projects the keys of a ConfigMap or Secret (data, nil when the
// object is missing) into out.
func addKeys(out map[string]fileData, what, ns, name string, data map[string][]byte, found bool, items []manifests.KeyToPath, mode fs.FileMode, optional bool) error {
	if !found {
		if optional {
			return nil
		}
		return configErrorf("%s %q not found", what, name)
	}
	if len(items) == 0 {
		for k, v := range data {
			if err := validFilePath(k); err != nil {
				return configErrorf("%s %s/%s: key %s: %v", what, ns, name, k, err)
			}
			out[k] = fileData{data: v, mode: mode}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return configErrorf("%s %s/%s: references non-existent key %s", what, ns, name, it.Key)
		}
		if err := validFilePath(it.Path); err != nil {
			return configErrorf("%s %s/%s: item %s: %v", what, ns, name, it.Key, err)
		}
		out[it.Path] = fileData{data: v, mode: fileMode(it.Mode, mode)}
	}
	return nil
}

func configMapBytes(cm *manifests.ConfigMap) (map[string][]byte, bool) {
	if cm == nil {
		return nil, false
	}
	out := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	maps.Copy(out, cm.BinaryData)
	return out, true
}

func secretBytes(s *manifests.Secret) (map[string][]byte, bool) {
	if s == nil {
		return nil, false
	}
	return s.Data, true
}

func addDownward(out map[string]fileData, pod *manifests.Pod, items []manifests.DownwardAPIVolumeFile, mode fs.FileMode, dw downward) error {
	for _, it := range items {
		if err := validFilePath(it.Path); err != nil {
			return configErrorf("downwardAPI: %v", err)
		}
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = podField(pod, it.FieldRef.FieldPath, dw, false)
		case it.ResourceFieldRef != nil:
			v, err = resourceField(pod, nil, it.ResourceFieldRef, dw)
		default:
			err = configErrorf("downwardAPI item %s names no field", it.Path)
		}
		if err != nil {
			return err
		}
		out[it.Path] = fileData{data: []byte(v), mode: fileMode(it.Mode, mode)}
	}
	return nil
}

// projectedFiles computes the files of a configMap, secret, projected or
// downwardAPI volume.
func projectedFiles(pod *manifests.Pod, v *manifests.Volume, objs podObjects, dw downward) (map[string]fileData, error) {
	out := map[string]fileData{}
	ns := pod.Namespace
	var err error
	switch {
	case v.ConfigMap != nil:
		data, ok := configMapBytes(objs.configMaps[v.ConfigMap.Name])
		err = addKeys(out, "configmap", ns, v.ConfigMap.Name, data, ok, v.ConfigMap.Items, defaultMode(v.ConfigMap.DefaultMode), isOptional(v.ConfigMap.Optional))
	case v.Secret != nil:
		data, ok := secretBytes(objs.secrets[v.Secret.SecretName])
		err = addKeys(out, "secret", ns, v.Secret.SecretName, data, ok, v.Secret.Items, defaultMode(v.Secret.DefaultMode), isOptional(v.Secret.Optional))
	case v.DownwardAPI != nil:
		err = addDownward(out, pod, v.DownwardAPI.Items, defaultMode(v.DownwardAPI.DefaultMode), dw)
	case v.Projected != nil:
		mode := defaultMode(v.Projected.DefaultMode)
		for _, src := range v.Projected.Sources {
			switch {
			case src.ConfigMap != nil:
				data, ok := configMapBytes(objs.configMaps[src.ConfigMap.Name])
				err = addKeys(out, "configmap", ns, src.ConfigMap.Name, data, ok, src.ConfigMap.Items, mode, isOptional(src.ConfigMap.Optional))
			case src.Secret != nil:
				data, ok := secretBytes(objs.secrets[src.Secret.Name])
				err = addKeys(out, "secret", ns, src.Secret.Name, data, ok, src.Secret.Items, mode, isOptional(src.Secret.Optional))
			case src.DownwardAPI != nil:
				err = addDownward(out, pod, src.DownwardAPI.Items, mode, dw)
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", v.Name, err)
	}
	return out, nil
}

// writeAtomic makes dir hold exactly files, swapping them in at once (see
// the top of this file). It does nothing when dir already holds them, and
// reports whether it changed anything.
func writeAtomic(dir string, files map[string]fileData, dirMode fs.FileMode) (bool, error) {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return false, err
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return false, err
	}
	old, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if old != "" && sameFiles(filepath.Join(dir, old), files) {
		return false, nil
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := writeFiles(ts, files); err != nil {
		_ = os.RemoveAll(ts)
		return false, err
	}
	tmp := filepath.Join(dir, dataTmpLink)
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		_ = os.RemoveAll(ts)
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		_ = os.RemoveAll(ts)
		return false, err
	}
	// The top-level names: new ones get a symlink through ..data; names
	// no longer there lose theirs (their target is already gone).
	top := map[string]bool{}
	for p := range files {
		first, _, _ := strings.Cut(p, "/")
		top[first] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join(dataLink, name), link); err != nil {
				return true, err
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") || top[name] {
			continue
		}
		if target, err := os.Readlink(filepath.Join(dir, name)); err == nil && strings.HasPrefix(target, dataLink+string(filepath.Separator)) {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
	if old != "" && old != filepath.Base(ts) {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return true, err
		}
	}
	return true, nil
}

func writeFiles(root string, files map[string]fileData) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		f := files[p]
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(full, f.mode); err != nil { // the umask narrowed it
			return err
		}
	}
	return nil
}

// sameFiles reports whether root holds exactly files, with their modes.
func sameFiles(root string, files map[string]fileData) bool {
	seen := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		want, ok := files[filepath.ToSlash(rel)]
		if !ok {
			return errors.New("extra file")
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if info.Mode().Perm() != want.mode || !bytes.Equal(b, want.data) {
			return errors.New("changed")
		}
		seen++
		return nil
	})
	return err == nil && seen == len(files)
}

// checkHostPath applies a hostPath volume's type: checks it, or creates
// the directory or file.
func checkHostPath(hp *manifests.HostPathVolumeSource) error {
	info, err := os.Stat(hp.Path)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return err
	}
	switch hp.Type {
	case "":
		return nil
	case "DirectoryOrCreate":
		if missing {
			return os.MkdirAll(hp.Path, 0o755)
		}
		if !info.IsDir() {
			return fmt.Errorf("hostPath %s is not a directory", hp.Path)
		}
	case "FileOrCreate":
		if missing {
			if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("hostPath %s is not a file", hp.Path)
		}
	case "Directory", "File", "Socket", "CharDevice", "BlockDevice":
		if missing {
			return fmt.Errorf("hostPath %s does not exist", hp.Path)
		}
		m := info.Mode()
		ok := map[string]bool{
			"Directory":   m.IsDir(),
			"File":        m.IsRegular(),
			"Socket":      m&fs.ModeSocket != 0,
			"CharDevice":  m&fs.ModeCharDevice != 0,
			"BlockDevice": m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0,
		}[hp.Type]
		if !ok {
			return fmt.Errorf("hostPath %s is not a %s", hp.Path, hp.Type)
		}
	default:
		return fmt.Errorf("hostPath %s: unsupported type %q", hp.Path, hp.Type)
	}
	return nil
}

// mountedBy counts the containers of a pod that mount a volume.
func mountedBy(pod *manifests.Pod, name string) int {
	n := 0
	for _, list := range [][]manifests.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, m := range c.VolumeMounts {
				if m.Name == name {
					n++
					break
				}
			}
		}
	}
	return n
}

// podObjectsOf returns the ConfigMaps and Secrets of a pod's assignment.
func (d *Daemon) podObjectsOf(pod *manifests.Pod) podObjects {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.objects[pod.Namespace+"/"+pod.Name]
}

// downwardOf is what the Downward API needs of the node for a pod; the
// pod's address and the node's capacity are asked of the runtime only when
// a field reads them.
func (d *Daemon) downwardOf(ctx context.Context, pod *manifests.Pod) downward {
	return downward{
		hostIP: d.Address,
		podIP: func() string {
			pods, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name, LabelUID: pod.UID})
			if err != nil || len(pods) == 0 {
				return ""
			}
			return pods[0].IP
		},
		node: func() (int64, int64) {
			info, err := d.Runtime.Info(ctx)
			if err != nil {
				return 0, 0
			}
			return int64(info.CPUs) * 1000, info.MemoryBytes
		},
	}
}

// Waiting reasons this file sets.
const (
	reasonConfigError = "CreateContainerConfigError"
	reasonCreating    = "ContainerCreating"
	mountFailedPrefix = "MountVolume.SetUp failed"
)

// preparePod sets up what a pod's containers need before they can be
// created: it checks that every ConfigMap, Secret and key the containers
// reference is there, and sets up the pod's volumes. When something is
// missing it sets the containers' waiting reason (CreateContainerConfigError
// naming what is missing, or ContainerCreating for a volume that cannot be
// set up), records an event, and returns false: the pod waits, and the next
// relist tries again.
func (d *Daemon) preparePod(ctx context.Context, pod *manifests.Pod) bool {
	objs := d.podObjectsOf(pod)
	// The check needs no pod address: it only looks for missing objects.
	check := downward{hostIP: d.Address}
	all := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
	errs := map[string]error{}
	for i := range all {
		if _, _, _, err := resolveEnv(pod, &all[i], objs, check); err != nil {
			errs[all[i].Name] = err
		}
	}
	var podErr error
	if len(errs) == 0 {
		podErr = d.setUpVolumes(ctx, pod, objs)
	}
	for _, c := range all {
		err := errs[c.Name]
		if err == nil {
			err = podErr
		}
		d.setConfigWaiting(ctx, pod, c.Name, err)
	}
	return len(errs) == 0 && podErr == nil
}

// setConfigWaiting sets (err != nil) or clears a container's waiting reason
// for its configuration, with an event when it changes.
func (d *Daemon) setConfigWaiting(ctx context.Context, pod *manifests.Pod, container string, err error) {
	d.mu.Lock()
	cur, had := d.waiting[pod.UID][container]
	d.mu.Unlock()
	if err == nil {
		if had && (cur.Reason == reasonConfigError || strings.HasPrefix(cur.Message, mountFailedPrefix)) {
			d.setWaiting(pod, container, nil)
		}
		return
	}
	w := manifests.ContainerStateWaiting{Reason: reasonConfigError, Message: err.Error()}
	evReason := "Failed"
	var ce *configError
	if !errors.As(err, &ce) {
		w = manifests.ContainerStateWaiting{Reason: reasonCreating, Message: mountFailedPrefix + ": " + err.Error()}
		evReason = "FailedMount"
	}
	if had && cur == w {
		return
	}
	d.Log.Warn("container configuration incomplete", "pod", pod.Namespace+"/"+pod.Name, "container", container, "err", err)
	d.setWaiting(pod, container, &w)
	d.event(ctx, pod, "Warning", evReason, fmt.Sprintf("container %s: %s", container, w.Message))
}

// setUpVolumes creates a pod's volume directories, writes its projected
// files, checks its host paths and ensures its claims' named volumes.
func (d *Daemon) setUpVolumes(ctx context.Context, pod *manifests.Pod, objs podObjects) error {
	if len(pod.Spec.Volumes) == 0 {
		return nil
	}
	d.volMu.Lock()
	defer d.volMu.Unlock()
	needDir := false
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if !safeName(v.Name) {
			return configErrorf("volume name %q", v.Name)
		}
		needDir = needDir || v.EmptyDir != nil || isProjected(v)
	}
	if needDir && (d.DataDir == "" || !safeName(pod.UID)) {
		return errors.New("the node has no data directory for pod volumes")
	}
	dw := d.downwardOf(ctx, pod)
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		dir := d.volumeDir(pod.UID, v.Name)
		switch {
		case isProjected(v):
			files, err := projectedFiles(pod, v, objs, dw)
			if err != nil {
				return err
			}
			mode := fs.FileMode(0o755)
			if v.Secret != nil {
				mode = 0o700
			}
			if _, err := writeAtomic(dir, files, mode); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if v.EmptyDir.Medium == "Memory" && mountedBy(pod, v.Name) > 1 && !isMountPoint(dir) {
				// Shared by several containers: one tmpfs on the node,
				// bound into each. Without the privilege to mount it the
				// directory stays disk-backed.
				var size int64
				if v.EmptyDir.SizeLimit != nil {
					size, _ = v.EmptyDir.SizeLimit.Value()
				}
				if err := mountTmpfs(dir, size); err != nil {
					d.Log.Warn("emptyDir medium Memory is disk-backed: cannot mount a tmpfs", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
				}
			}
		case v.HostPath != nil:
			if err := checkHostPath(v.HostPath); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		case v.PersistentVolumeClaim != nil:
			claim := v.PersistentVolumeClaim.ClaimName
			if err := d.Runtime.EnsureVolume(ctx, ClaimVolumeName(pod.Namespace, claim), map[string]string{LabelNode: d.Name, LabelClaim: pod.Namespace + "/" + claim}); err != nil {
				return fmt.Errorf("volume %s: claim %s: %w", v.Name, claim, err)
			}
		}
	}
	return nil
}

// refreshVolumes rewrites the projected volumes of a pod already set up,
// so that a changed ConfigMap or Secret (or the pod's labels and
// annotations) reaches its running containers without a restart.
func (d *Daemon) refreshVolumes(ctx context.Context, pod *manifests.Pod, objs podObjects) {
	if d.DataDir == "" || !safeName(pod.UID) {
		return
	}
	if _, err := os.Stat(d.podDir(pod.UID)); err != nil {
		return // not set up yet: preparePod writes them
	}
	d.volMu.Lock()
	defer d.volMu.Unlock()
	dw := d.downwardOf(ctx, pod)
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if !isProjected(v) || !safeName(v.Name) {
			continue
		}
		dir := d.volumeDir(pod.UID, v.Name)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		files, err := projectedFiles(pod, v, objs, dw)
		if err != nil {
			// As the kubelet: the files keep their last content.
			d.Log.Warn("cannot update volume", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
			continue
		}
		mode := fs.FileMode(0o755)
		if v.Secret != nil {
			mode = 0o700
		}
		changed, err := writeAtomic(dir, files, mode)
		if err != nil {
			d.Log.Warn("update volume", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
			continue
		}
		if changed {
			d.Log.Info("volume updated", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name)
		}
	}
}

// mounts returns the mounts of a container.
func (d *Daemon) mounts(pod *manifests.Pod, c *manifests.Container) []Mount {
	var out []Mount
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v manifests.Volume) bool { return v.Name == vm.Name })
		if i < 0 || !safeName(vm.Name) {
			d.Log.Warn("volume mount names no volume", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "volume", vm.Name)
			continue
		}
		v := &pod.Spec.Volumes[i]
		if vm.SubPath != "" && validFilePath(vm.SubPath) != nil {
			d.Log.Warn("bad subPath", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "sub_path", vm.SubPath)
			continue
		}
		dir := d.volumeDir(pod.UID, v.Name)
		m := Mount{Type: MountBind, Target: vm.MountPath, ReadOnly: vm.ReadOnly}
		switch {
		case isProjected(v):
			m.Source, m.ReadOnly = dir, true
			if vm.SubPath != "" {
				// The file as it is now: a subPath mount does not follow
				// updates.
				p, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(vm.SubPath)))
				if err != nil {
					d.Log.Warn("subPath of volume", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
					continue
				}
				m.Source = p
			}
		case v.EmptyDir != nil:
			if v.EmptyDir.Medium == "Memory" && vm.SubPath == "" && !isMountPoint(dir) && mountedBy(pod, v.Name) == 1 {
				m = Mount{Type: MountTmpfs, Target: vm.MountPath, ReadOnly: vm.ReadOnly}
				break
			}
			m.Source = dir
			if vm.SubPath != "" {
				m.Source = filepath.Join(dir, filepath.FromSlash(vm.SubPath))
				if err := os.MkdirAll(m.Source, 0o777); err != nil {
					d.Log.Warn("subPath of volume", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "err", err)
				}
			}
		case v.HostPath != nil:
			m.Source = filepath.Join(v.HostPath.Path, filepath.FromSlash(vm.SubPath))
		case v.PersistentVolumeClaim != nil:
			if vm.SubPath != "" {
				d.Log.Warn("subPath of a persistentVolumeClaim is not supported; mounting the whole volume", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name)
			}
			m = Mount{Type: MountVolume, Source: ClaimVolumeName(pod.Namespace, v.PersistentVolumeClaim.ClaimName), Target: vm.MountPath,
				ReadOnly: vm.ReadOnly || v.PersistentVolumeClaim.ReadOnly}
		default:
			d.Log.Warn("volume has no source", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name)
			continue
		}
		out = append(out, m)
	}
	return out
}

// removePodFiles removes a pod's directory (its volumes, unmounting any
// tmpfs) once its runtime pod is gone and the pod is no longer assigned.
// A pod replaced for a changed spec keeps it, as the kubelet keeps a pod's
// volumes while it recreates its sandbox. Claims are never removed here.
func (d *Daemon) removePodFiles(ctx context.Context, rp *PodInfo, pod *manifests.Pod) {
	uid := rp.Labels[LabelUID]
	if pod != nil || d.DataDir == "" || !safeName(uid) {
		return
	}
	if left, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name, LabelUID: uid}); err != nil || len(left) > 0 {
		return // the next removal or the start-up sweep tries again
	}
	d.removePodDir(uid)
}

func (d *Daemon) removePodDir(uid string) {
	d.volMu.Lock()
	defer d.volMu.Unlock()
	dir := d.podDir(uid)
	vols, _ := os.ReadDir(filepath.Join(dir, "volumes"))
	for _, v := range vols {
		if p := filepath.Join(dir, "volumes", v.Name()); isMountPoint(p) {
			if err := unmount(p); err != nil {
				d.Log.Warn("unmount pod volume", "uid", uid, "volume", v.Name(), "err", err)
				return
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		d.Log.Warn("remove pod directory", "uid", uid, "err", err)
	}
}

// sweepPodDirs removes the directories of pods that are neither assigned
// nor in the runtime: left behind while the daemon was down.
func (d *Daemon) sweepPodDirs(ctx context.Context) {
	if d.DataDir == "" {
		return
	}
	entries, err := os.ReadDir(filepath.Join(d.DataDir, "pods"))
	if err != nil {
		return
	}
	running, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name})
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for _, p := range running {
		keep[p.Labels[LabelUID]] = true
	}
	d.mu.Lock()
	for _, p := range d.desired {
		keep[p.UID] = true
	}
	d.mu.Unlock()
	for _, e := range entries {
		if e.IsDir() && !keep[e.Name()] && safeName(e.Name()) {
			d.Log.Info("removing directory of a pod gone while the node was down", "uid", e.Name())
			d.removePodDir(e.Name())
		}
	}
}

// hostAliases are a pod's extra /etc/hosts entries: its hostAliases, and,
// for a pod with a subdomain, its fully qualified name
// (<hostname>.<subdomain>.<namespace>.svc.cluster.local) as the kubelet
// writes it. That entry's IP is empty: the runtime fills in the pod's own
// address, known only once its network is up.
func hostAliases(pod *manifests.Pod, hostname string) []HostAlias {
	var out []HostAlias
	if sub := pod.Spec.Subdomain; sub != "" && hostname != "" {
		fqdn := fmt.Sprintf("%s.%s.%s.svc.cluster.local", hostname, sub, pod.Namespace)
		out = append(out, HostAlias{Hostnames: []string{fqdn, hostname}})
	}
	for _, a := range pod.Spec.HostAliases {
		if a.IP == "" || len(a.Hostnames) == 0 {
			continue
		}
		out = append(out, HostAlias{IP: a.IP, Hostnames: slices.Clone(a.Hostnames)})
	}
	return out
}
