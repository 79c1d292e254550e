package gitops

import (
	"crypto/sha256"
	"runtime"
	"sync"

	"github.com/capstan-io/capstan/manifests"
)

// fileCache remembers the objects each manifest file of the last good
// revision gave, by content, so a new revision revalidates only the files
// that changed: a one-file change in a large repository costs one file.
type fileCache map[string]cachedFile

type cachedFile struct {
	sum  [sha256.Size]byte
	objs []manifests.Object
}

// load validates a revision's files. Unchanged files (same path and
// content as in the last good revision) are not read again; changed ones
// are loaded one by one, in parallel. Any error, and any object declared
// twice, falls back to loading the whole revision at once, so errors are
// exactly what the loader reports for it (file:line:col, cross-file
// duplicates). The cache is replaced only when the revision is good.
func (s *Syncer) load(files []manifests.File) ([]manifests.Object, error) {
	next := make(fileCache, len(files))
	var todo []int
	sums := make([][sha256.Size]byte, len(files))
	for i, f := range files {
		sums[i] = sha256.Sum256(f.Data)
		if c, ok := s.files[f.Path]; ok && c.sum == sums[i] {
			next[f.Path] = c
		} else {
			todo = append(todo, i)
		}
	}
	loaded := make([][]manifests.Object, len(files))
	failed := false
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for range min(runtime.GOMAXPROCS(0), max(len(todo), 1)) {
		wg.Go(func() {
			for i := range work {
				objs, err := s.Load(files[i : i+1])
				mu.Lock()
				if err != nil {
					failed = true
				}
				loaded[i] = objs
				mu.Unlock()
			}
		})
	}
	for _, i := range todo {
		work <- i
	}
	close(work)
	wg.Wait()
	if failed {
		return s.Load(files)
	}
	var out []manifests.Object
	seen := map[string]bool{}
	for i, f := range files {
		objs := loaded[i]
		if objs == nil {
			objs = next[f.Path].objs
		} else {
			next[f.Path] = cachedFile{sum: sums[i], objs: objs}
		}
		for _, o := range objs {
			k := manifests.KeyOf(o)
			if seen[k] {
				return s.Load(files) // a duplicate: the loader says where
			}
			seen[k] = true
			out = append(out, o)
		}
	}
	s.files = next
	return out, nil
}
