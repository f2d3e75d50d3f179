/* recipes/recipe_plan_print.c: a plan as --dry-run shows it, as JSON
 * (--json) and as text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "recipe.h"
#include "recipe_internal.h"
#include "util.h"

json_t *recipe_plan_to_json(const struct recipe_plan *p)
{
        json_t *j = json_object(), *layers = json_array(), *tags = json_array();

        json_object_set_new(j, "recipe", json_string(p->recipe_name));
        json_object_set_new(j, "base", json_string(p->base));
        json_object_set_new(j, "variables", json_incref(p->variables));
        for (size_t i = 0; i < p->n_layers; i++) {
                json_t *l = json_object();
                json_object_set_new(l, "name", json_string(p->layers[i].name));
                json_object_set_new(l, "kind",
                                    json_string(recipe_layer_kind_name(p->layers[i].kind)));
                json_object_set_new(l, "params", json_incref(p->layers[i].params));
                if (p->layers[i].unresolved)
                        json_object_set_new(l, "unresolved", json_true());
                if (p->layers[i].configure_step) {
                        /* the debs layer it configures is the one below */
                        json_object_set_new(l, "configures", json_string(p->layers[i - 1].name));
                        if (p->layers[i].conditional)
                                json_object_set_new(l, "when", json_string(RECIPE_CONFIGURE_WHEN));
                }
                json_array_append_new(layers, l);
        }
        json_object_set_new(j, "layers", layers);
        json_object_set_new(j, "config", json_incref(p->config));
        json_object_set_new(j, "annotations", json_incref(p->annotations));
        for (size_t i = 0; i < p->n_tags; i++)
                json_array_append_new(tags, json_string(p->tags[i]));
        json_object_set_new(j, "tags", tags);
        json_object_set_new(j, "unresolved", json_incref(p->unresolved));
        if (p->validate)
                json_object_set_new(j, "validate", json_incref(p->validate));
        return j;
}

static void print_strings(FILE *f, const json_t *a)
{
        size_t i;
        json_t *e;

        json_array_foreach(a, i, e) fprintf(f, "%s%s", i ? " " : "", json_string_value(e));
}

static void layer_summary(FILE *f, const struct recipe_layer *l)
{
        const json_t *p = l->params, *v, *e;
        size_t i;

        switch (l->kind) {
        case RECIPE_LAYER_WHEELS:
                if ((v = json_object_get(p, "packages"))) {
                        fprintf(f, "\n      packages: ");
                        print_strings(f, v);
                }
                if ((v = json_object_get(p, "index")))
                        fprintf(f, "\n      index: %s", json_string_value(v));
                if ((v = json_object_get(p, "requirements")))
                        fprintf(f, "\n      requirements: %s", json_string_value(v));
                if ((v = json_object_get(p, "project")))
                        fprintf(f, "\n      project: %s", json_string_value(v));
                if ((v = json_object_get(p, "project_from")))
                        fprintf(f, "\n      project: the source of layer '%s'", json_string_value(v));
                if ((v = json_object_get(p, "extras"))) {
                        fprintf(f, "\n      extras: ");
                        print_strings(f, v);
                }
                json_array_foreach(json_object_get(p, "wheels"), i, e)
                        fprintf(f, "\n      wheel: %s", json_string_value(json_object_get(e, "path")));
                break;
        case RECIPE_LAYER_DEBS:
                json_array_foreach(json_object_get(p, "debs"), i, e)
                        fprintf(f, "\n      deb: %s", json_string_value(json_object_get(e, "path")));
                json_array_foreach(json_object_get(p, "apt"), i, e) {
                        fprintf(f, "\n      apt: %s ", json_string_value(json_object_get(e, "mirror")));
                        if ((v = json_object_get(e, "index"))) {
                                fprintf(f, "(%s)", json_string_value(v));
                        } else {
                                fprintf(f, "%s ", json_string_value(json_object_get(e, "suite")));
                                print_strings(f, json_object_get(e, "components"));
                        }
                        fprintf(f, "\n      packages: ");
                        print_strings(f, json_object_get(e, "packages"));
                }
                break;
        case RECIPE_LAYER_SOURCE: {
                const char *from = json_string_value(json_object_get(p, "from"));
                if (!strcmp(from, "local"))
                        fprintf(f, "\n      local: %s", json_string_value(json_object_get(p, "local")));
                else
                        fprintf(f, "\n      %s: %s @ %s", from,
                                json_string_value(json_object_get(p, "repository")),
                                (v = json_object_get(p, "ref")) ? json_string_value(v) : "HEAD");
                fprintf(f, "\n      path: %s", json_string_value(json_object_get(p, "path")));
                break;
        }
        case RECIPE_LAYER_RUN:
                if (l->configure_step) {
                        fprintf(f,
                                "\n      maintainer scripts of the debs layer below: dpkg "
                                "--configure -a in the image%s%s%s",
                                l->conditional ? " (when " : "",
                                l->conditional ? RECIPE_CONFIGURE_WHEN : "",
                                l->conditional ? ")" : "");
                        break;
                }
                if (json_is_true(json_object_get(p, "network")))
                        fprintf(f, "\n      in the image, with the network");
                else
                        fprintf(f, "\n      in the image");
                /* fall through */
        case RECIPE_LAYER_BUILD: {
                const char *key;
                if (l->kind == RECIPE_LAYER_BUILD &&
                    (v = json_object_get(p, "in")) && !strcmp(json_string_value(v), "image"))
                        fprintf(f, "\n      in the image");
                if ((v = json_object_get(p, "sdist")))
                        fprintf(f, "\n      sdist: %s from %s",
                                json_string_value(json_object_get(v, "requirement")),
                                json_string_value(json_object_get(v, "index")));
                fprintf(f, "\n      command: ");
                print_strings(f, json_object_get(p, "command"));
                json_object_foreach(json_object_get(p, "env"), key, v)
                        fprintf(f, "\n      env: %s=%s", key, json_string_value(v));
                break;
        }
        case RECIPE_LAYER_TREE:
                fprintf(f, "\n      tree: %s -> %s", json_string_value(json_object_get(p, "src")),
                        json_string_value(json_object_get(p, "dest")));
                break;
        case RECIPE_LAYER_FILES:
                json_array_foreach(json_object_get(p, "files"), i, e) {
                        if ((v = json_object_get(e, "link")))
                                fprintf(f, "\n      link: %s -> %s",
                                        json_string_value(json_object_get(e, "dest")),
                                        json_string_value(v));
                        else
                                fprintf(f, "\n      file: %s -> %s",
                                        json_string_value(json_object_get(e, "src")),
                                        json_string_value(json_object_get(e, "dest")));
                }
                break;
        }
}

char *recipe_plan_to_text(const struct recipe_plan *p)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        const char *key;
        json_t *v;
        size_t i;

        if (!f)
                return NULL;
        fprintf(f, "recipe: %s\nbase: %s\ntags:\n", p->recipe_name, p->base);
        for (i = 0; i < p->n_tags; i++)
                fprintf(f, "  %s%s\n", p->tags[i],
                        strstr(p->tags[i], "${") ? "  (unresolved)" : "");
        fprintf(f, "variables:\n");
        json_object_foreach(p->variables, key, v) fprintf(f, "  %s = %s\n", key,
                                                          json_string_value(v));
        fprintf(f, "layers (bottom to top):\n  0 base: %s\n", p->base);
        for (i = 0; i < p->n_layers; i++) {
                fprintf(f, "  %zu %s: %s%s", i + 1, p->layers[i].name,
                        recipe_layer_kind_name(p->layers[i].kind),
                        p->layers[i].unresolved ? "  (unresolved)" : "");
                layer_summary(f, &p->layers[i]);
                fputc('\n', f);
        }
        fprintf(f, "config:\n");
        json_object_foreach(p->config, key, v) {
                if (json_is_string(v)) {
                        fprintf(f, "  %s: %s\n", key, json_string_value(v));
                } else if (json_is_array(v)) {
                        fprintf(f, "  %s:", key);
                        json_t *e;
                        json_array_foreach(v, i, e) fprintf(f, "%s%s",
                                                            !strcmp(key, "Env") ? "\n    " : " ",
                                                            json_string_value(e));
                        fputc('\n', f);
                } else if (json_is_object(v)) {
                        const char *k2;
                        json_t *e;
                        fprintf(f, "  %s:\n", key);
                        json_object_foreach(v, k2, e) fprintf(f, "    %s=%s\n", k2,
                                                              json_string_value(e));
                }
        }
        fprintf(f, "annotations:\n");
        json_object_foreach(p->annotations, key, v) fprintf(f, "  %s=%s\n", key,
                                                            json_string_value(v));
        if (json_array_size(p->unresolved)) {
                fprintf(f, "unresolved:\n");
                json_array_foreach(p->unresolved, i, v) fprintf(f, "  %s\n", json_string_value(v));
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
