/* recipes/recipe_internal.h: what the files of recipes/ share; not API. */
#ifndef KILN_RECIPES_INTERNAL_H
#define KILN_RECIPES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "recipe.h"

/* jansson's iterators take non-const objects; reading never writes */
static inline json_t *jmut(const json_t *j)
{
        return (json_t *)(uintptr_t)j;
}

struct rpos {
        char *ptr;
        int kline, kcol; /* the key (for array elements: the value) */
        int vline, vcol; /* the value */
};

struct recipe {
        char *name; /* as given, for messages */
        char *dir;  /* relative paths in the recipe start here */
        json_t *root;
        struct rpos *pos;
        size_t n_pos, cap_pos;
};

/* Sets err to "invalid recipe 'NAME' at line L column C: MSG" with the
 * position of the value (or key) at ptr.  Returns -1. */
int recipe_error_at(const struct recipe *r, const char *ptr, bool key, enum kiln_errc code,
                    struct kiln_error *err, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A wheel RECORD's hash of d: "sha256=" and urlsafe base64 without padding. */
void recipe_record_hash(const struct oci_digest *d, char *out, size_t outlen);

/* The schema check (recipe_schema.c): an object's fields (every key known,
 * every type right, required keys present), an array's element type, an
 * object of strings. */
enum recipe_stype { S_STRING, S_OBJECT, S_ARRAY, S_BOOL, S_INT, S_STRING_OR_ARRAY };
struct recipe_sfield {
        const char *key;
        enum recipe_stype type;
        bool required;
};
int recipe_check_object(const struct recipe *r, const json_t *obj, const char *ptr,
                        const char *where, const struct recipe_sfield *fields, size_t n,
                        struct kiln_error *err);
int recipe_check_elems(const struct recipe *r, const json_t *v, const char *ptr, const char *what,
                       enum recipe_stype t, struct kiln_error *err);
int recipe_check_string_map(const struct recipe *r, const json_t *v, const char *ptr,
                            const char *what, struct kiln_error *err);
/* Layer idx of the recipe's "layers", l, against the schema of its kind. */
int recipe_check_layer(const struct recipe *r, const json_t *l, size_t idx, struct kiln_error *err);
/* Files built into kiln (recipes/embed.py, recipes/meson.build): the
 * shipped recipes, and the program kiln validate runs in the image. */
extern const char recipe_embedded_linnaeus_json[];
extern const size_t recipe_embedded_linnaeus_json_len;
extern const char recipe_embedded_validate_checks_py[];
extern const size_t recipe_embedded_validate_checks_py_len;

/* The recipe's "validate" object (recipe_validate.c). */
int recipe_validate_check(const struct recipe *r, const json_t *v, struct kiln_error *err);

/* A layer's "when" (and a check's): "", "none", "false", "0" and "no" are
 * false, anything else true. */
bool recipe_truthy(const char *s);

char *recipe_ptr_key(const char *ptr, const char *key);
char *recipe_ptr_index(const char *ptr, size_t i);
bool recipe_var_name_valid(const char *s);
/* An octal mode of at most 07777 ("0755"), or a string still holding ${...}. */
bool recipe_mode_valid(const char *s);

/* The mode policy of layer l (docs/layers.md, "Modes") set on src: debs
 * and "keep_modes" keep the staged modes, a tree's "modes" and the files'
 * "mode" become exact-mode rules at their paths in the image. */
struct layer_source;
int recipe_layer_modes(const struct recipe_layer *l, struct layer_source *src,
                       struct kiln_error *err);

struct recipe_plan;
/* A recipe path: relative to the recipe's dir, file:// stripped; other
 * URLs fail with KILN_E_UNSUPPORTED until registry/ fetches. */
char *recipe_resolve_input(const struct recipe_plan *p, const char *s, struct kiln_error *err);
/* ROOT/PATH for an image path, refusing "..". */
char *recipe_path_under(const char *root, const char *path, struct kiln_error *err);
/* mkdir -p whose new directories are 0755 whatever the umask. */
int recipe_mkdir_p(const char *path, struct kiln_error *err);
/* Copies src to dst; skip() may leave out entries (rel: path below src). */
int recipe_copy_tree_filtered(const char *src, const char *dst, const char *rel,
                              bool (*skip)(void *ctx, const char *rel, bool is_dir), void *ctx,
                              struct kiln_error *err);
/* Runs argv (no shell, PATH searched in envp's PATH) with cwd and envp
 * (NULL: ours); stdout to out_fd when >= 0, else /dev/null; the last
 * line of stderr goes into the message when it fails. */
int recipe_run(const char *const *argv, const char *cwd, char *const *envp, int out_fd,
               struct kiln_error *err);

/* Runs argv like recipe_run() with its stdout in *ret_out (at most 1 MiB)
 * and its exit status in *ret_status: a status below 126 is no error. */
int recipe_run_output(const char *const *argv, char *const *envp, char **ret_out,
                      int *ret_status, struct kiln_error *err);

struct archive;
/* Writes every entry of a tar reader under root: regular files, dirs,
 * symlinks, hard links; refuses '..' and writing through links. */
int recipe_tar_extract(struct archive *a, const char *what, const char *root, bool merged_usr,
                       struct kiln_error *err);

/* The apt front end; root NULL: verify only.  Appends each package's
 * sha256 to resolved and, when inventory is not NULL, its entry (stage.h:
 * recipe_stage_result.packages) from the index's stanza; when files is not
 * NULL, the local path of each .deb (fetched even without root). */
struct recipe_stage_opts;
int recipe_apt_each(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                    const char *const *index_paths, size_t n_index, const char *mirror,
                    const char *const *packages, size_t n, const char *arch, const char *root,
                    bool merged_usr, bool status_d, json_t *resolved, json_t *inventory,
                    json_t *files, struct kiln_error *err);
/* recipe_deb_unpack(); status_d false: no status.d entry (the layer
 * carries a dpkg database instead). */
int recipe_deb_unpack_as(const char *path, const char *sha256, const char *root, bool merged_usr,
                         bool status_d, char **ret_package, struct kiln_error *err);

/* Unpacks the n .debs (paths[i], checked against shas[i]) under root in
 * their order, as recipe_deb_unpack_as one after the other would: a later
 * package's file replaces an earlier one's.  The checks and the
 * decompression of each data.tar run on several CPUs ahead of the
 * unpacking, a few packages at a time (the xz of a package set is most of
 * its cost), in ROOT.debs-XXXXXX beside root, removed at the end. */
int recipe_deb_unpack_all(const char *const *paths, const char *const *shas, size_t n,
                          const char *root, bool merged_usr, bool status_d,
                          struct kiln_error *err);
/* The value of field in a deb822 stanza (first line only), or NULL. */
char *recipe_control_field(const char *control, const char *field);

/* An apt source's indexes (recipe_apt.c): the Packages files of its
 * components, each checked against a Release whose signature gpgv
 * verified with the recipe's keyring or the base's (docs/security.md).
 * A local mirror without a keyring is read as given: release is NULL. */
struct recipe_apt_index {
        char **files; /* local paths, any compression */
        size_t n;
        char *mirror;  /* where Filename paths start: URL or directory */
        char *release; /* "sha256:HEX" of the InRelease (or Release) */
};
/* source: one entry of a debs layer's 'apt'; arch: the layer's; pin: the
 * lock's digest of its Release (NULL: none), read from the cache when
 * there and required with o->locked. */
int recipe_apt_index_open(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                          const json_t *source, const char *arch, const char *pin,
                          struct recipe_apt_index *ret, struct kiln_error *err);
void recipe_apt_index_release(struct recipe_apt_index *x);
/* gpgv's --status-fd lines -> 0 when a key of the keyring made a good
 * signature and no signature is bad (apt's rule); else the reason, with
 * what (the source) first. */
int recipe_apt_gpgv_verdict(const char *status, int exit_status, const char *what,
                            struct kiln_error *err);
/* "Sat, 04 Dec 2026 17:00:00 UTC" -> seconds since the epoch. */
int recipe_apt_date_parse(const char *s, long long *ret);

/* What dpkg records of a package (recipe_deb.c): its control file, the
 * other control.tar members (md5sums, conffiles, maintainer scripts,
 * shlibs, triggers...), the paths it ships as dpkg -L lists them, and
 * " /etc/x MD5" lines for its conffiles. */
struct recipe_deb_member {
        char *name;
        char *data;
        size_t len;
        unsigned mode;
};
struct recipe_deb_meta {
        char *control;
        struct recipe_deb_member *members;
        size_t n_members;
        char *list;
        char *conffiles;
};
int recipe_deb_meta_read(const char *path, struct recipe_deb_meta *ret, struct kiln_error *err);
void recipe_deb_meta_release(struct recipe_deb_meta *m);

/* The dpkg database of a debs layer (recipe_dpkg.c): the base's status
 * (recipe_dpkg_status_path: base_root's /var/lib/dpkg/status, *ret NULL
 * when the base has none), the packages of the layers below added without
 * root, the layer's own with root (its info/ files are written there),
 * then the merged status written under root. */
struct recipe_dpkg;
int recipe_dpkg_status_path(const char *base_root, char **ret);
int recipe_dpkg_load(const char *status_path, struct recipe_dpkg **ret, struct kiln_error *err);
/* flags: RECIPE_DPKG_CONFIGURED for a package a configure step below
 * configured ("installed", its trigger activations done there),
 * RECIPE_DPKG_OWN for the layer's own (not configured yet: its trigger
 * interests do not take part in this layer's activations). */
enum {
        RECIPE_DPKG_CONFIGURED = 1u << 0,
        RECIPE_DPKG_OWN = 1u << 1,
};
int recipe_dpkg_add(struct recipe_dpkg *db, const struct recipe_deb_meta *m, const char *root,
                    unsigned flags, struct kiln_error *err);
int recipe_dpkg_write(const struct recipe_dpkg *db, const char *root, struct kiln_error *err);
void recipe_dpkg_free(struct recipe_dpkg *db);

/* Debian versions compared as dpkg --compare-versions does: <0, 0, >0. */
int recipe_deb_version_cmp(const char *a, const char *b);
/* The packages apt-get install would add for requests (names with an
 * optional "(OP VERSION)") over the Packages texts indexes[0..n) of the
 * layer's apt sources, for arch, given the dpkg status of the image below
 * (may be NULL): *ret is [{"name","version","source":I}] in install order
 * (dependencies first), I the index of the source the package comes from. */
int recipe_apt_resolve(const char *const *indexes, size_t n, const char *status, const char *arch,
                       const char *const *requests, size_t n_req, json_t **ret,
                       struct kiln_error *err);
/* The stanzas of the Packages files at paths, one text. */
int recipe_apt_read_indexes(const char *const *paths, size_t n, char **ret,
                            struct kiln_error *err);

/* One inventory entry (stage.h: recipe_stage_result.packages); file is a
 * path or URL whose last part is the file's name; arch and url may be NULL. */
struct recipe_inventory_item {
        const char *type, *name, *version, *arch, *sha256, *file, *url;
};
/* Appends it to packages (nothing when packages is NULL). */
int recipe_inventory_add(json_t *packages, const struct recipe_inventory_item *it,
                         struct kiln_error *err);
/* Appends the inventory entry of the .deb at path (its control's Package,
 * Version and Architecture), verified against sha256 first. */
int recipe_deb_inventory(const char *path, const char *sha256, const char *url, json_t *packages,
                         struct kiln_error *err);
/* recipe_stage.c's parts in other files: a layer of each kind staged
 * (recipe_stage_wheels.c, recipe_stage_debs.c), and what they share. */
int recipe_stage_wheels(const struct recipe_plan *p, size_t li, const struct recipe_stage_opts *o,
                        const json_t *params, const char *dir, json_t *resolved,
                        json_t *packages, struct kiln_error *err);
int recipe_stage_debs(const struct recipe_plan *p, const struct recipe_stage_opts *o, size_t li,
                      const json_t *params, const char *dir, json_t *resolved, json_t *packages,
                      json_t *apt_releases, struct kiln_error *err);
struct recipe_python_target;
struct recipe_wheel_list;
/* A wheel of a layer: listed when o->wheels is set, else installed into
 * dir (recipe_wheel_install). */
int recipe_wheel_take(const struct recipe_stage_opts *o, const char *file, const char *sha256,
                      const char *dir, const struct recipe_python_target *t,
                      struct kiln_error *err);
/* A layer written straight from its wheels (recipe_wheel_stream.c): the
 * entries a staged install would leave, each member read from its wheel
 * when the layer is written, every check of recipe_wheel_install() made
 * (some while it is written).  Fails for what a staged install into
 * root could refuse, or do differently (a wheel a streamed layer cannot
 * read, a file where another wheel puts a directory, a name too long for
 * root): install those instead, whose messages say what is wrong. */
struct recipe_wheel_layer;
struct layer_source;
int recipe_wheel_layer_new(const struct recipe_wheel_list *l, const char *root,
                           struct recipe_wheel_layer **ret, struct kiln_error *err);
const struct layer_source *recipe_wheel_layer_source(const struct recipe_wheel_layer *wl);
/* Once written: true when a member's data was not what it was planned
 * from (its size, CRC or RECORD hash), which a staged install reports. */
bool recipe_wheel_layer_failed(const struct recipe_wheel_layer *wl);
void recipe_wheel_layer_free(struct recipe_wheel_layer *wl);
/* A wheel, named and versioned by its file name, into packages. */
int recipe_inventory_wheel(json_t *packages, const char *file, const char *sha256,
                           const char *url, struct kiln_error *err);
/* A wheels or build layer's target keys (python, platform, prefix, ...). */
void recipe_python_target_of(const json_t *params, struct recipe_python_target *t);
/* A source layer's repository: relative paths are the recipe's. */
char *recipe_source_repository(const struct recipe_plan *p, const json_t *params);
/* "sha256:ABC..." or "abc..." -> "abc..." (64 lowercase hex) in out, or NULL. */
const char *recipe_norm_sha256(const char *in, char out[65]);
/* An http(s) URL kiln fetches (file:// URLs are paths). */
bool recipe_input_is_url(const char *s);
/* The PEP 503 page of project name on index: INDEX/NAME/ (a URL) or
 * INDEX/NAME/index.html (a directory).  ret_found false: no such page;
 * *ret_base is the page's base for its links. */
int recipe_index_page(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                      const char *index, const char *name, bool *ret_found, char **ret_html,
                      size_t *ret_len, char **ret_base, struct kiln_error *err);
/* A build step's "sdist": {"index", "requirement", "pre"}: the newest
 * source distribution on the index that the requirement allows (PEP 440,
 * pre-releases only with "pre" or when the requirement names one), with
 * the sha256 the index lists.  fetch: also downloaded (once, into
 * CACHE/fetch/) and verified, its path in *ret_path.  Its name, version,
 * URL and sha256 go to packages (the lock and the SBOM). */
int recipe_sdist_pick(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                      const json_t *sdist, bool fetch, char **ret_path, char **ret_sha256,
                      json_t *packages, struct kiln_error *err);
/* A file named by a path, file:// URL or (through opts->fetch, into
 * CACHE/fetch/) an http(s) URL; immutable ones are fetched once. */
char *recipe_input_file(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const char *s, bool immutable, int64_t max, struct kiln_error *err);
/* The same; signed_: the caller checks the file against a signature or a
 * hash from a signed index before use, so o->fetch_signed (plain http
 * allowed) fetches it. */
char *recipe_input_file_as(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                           const char *s, bool immutable, int64_t max, bool signed_,
                           struct kiln_error *err);
/* git sources in two steps: ref -> commit (fetching a URL into the cache
 * mirror), then commit -> tree at root/path. */
int recipe_git_resolve(const char *repository, const char *ref, const char *cache_dir,
                       char **ret_gitdir, char **ret_commit, struct kiln_error *err);
int recipe_git_export(const char *gitdir, const char *commit, const char *root, const char *path,
                      struct kiln_error *err);
/* The file at path in commit, written to dest (created; removed again when
 * the commit has no such file). */
int recipe_git_read_file(const char *gitdir, const char *commit, const char *path,
                         const char *dest, struct kiln_error *err);
/* Digest of a local source tree as it would be staged (ignore rules applied). */
/* *ret_excluded (when not NULL, and something was left out): what the
 * ignore rules and .git left out, as "N paths (a/, b, ...)" */
int recipe_local_digest(const char *dir, char ret[OCI_DIGEST_MAX], char **ret_excluded,
                        struct kiln_error *err);
/* Digest of a tree or file: names, kinds, exec bits, content, link targets. */
int recipe_tree_digest(const char *path, bool (*skip)(void *ctx, const char *rel, bool is_dir),
                       void *ctx, char ret[OCI_DIGEST_MAX], struct kiln_error *err);

/* A step's output (build steps in the image, run layers): every byte to
 * CACHE/logs/LAYER-KEY12.log, every line to log (stage.h recipe_step_log). */
struct recipe_step_log;
struct recipe_step_output;
struct recipe_step_output *recipe_step_output_open(const char *cache_dir, const char *layer,
                                                   const char *key,
                                                   const struct recipe_step_log *log,
                                                   struct kiln_error *err);
void recipe_step_output_feed(struct recipe_step_output *o, const char *buf, size_t n);
/* The last non-empty line (a line still open is ended first). */
const char *recipe_step_output_last(struct recipe_step_output *o);
/* Tells log that the step failed, with the log's path. */
void recipe_step_output_failed(struct recipe_step_output *o);
void recipe_step_output_free(struct recipe_step_output *o);

#endif
