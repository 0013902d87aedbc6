/* The reference runner for the local chat model: llama.cpp's C API with nothing of ours in between.
 *
 * Same GGUF, same chat template (the model's own), same context (4096 tokens, batch 512), same threads and greedy
 * sampling as kefu-llm-local. Prints one line per run: prompt tokens, time to first token, prompt tokens/s and
 * generation tokens/s, so `kefu-bench local` can be compared with it side by side.
 *
 *   reference MODEL.gguf THREADS SYSTEM.txt USER.txt N_GEN RUNS
 */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(1); }
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level; (void)text; (void)user;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS SYSTEM.txt USER.txt N_GEN RUNS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]), n_gen = atoi(argv[5]), runs = atoi(argv[6]);
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    char *sys = slurp(argv[3]), *user = slurp(argv[4]);
    struct llama_chat_message msgs[2] = {{"system", sys}, {"user", user}};
    int cap = (int)(strlen(sys) + strlen(user)) * 2 + 4096;
    char *prompt = malloc((size_t)cap);
    int plen = llama_chat_apply_template(llama_model_chat_template(model, NULL), msgs, 2, true, prompt, cap);
    if (plen < 0 || plen >= cap) { fprintf(stderr, "template failed\n"); return 1; }
    llama_token *toks = malloc(sizeof(llama_token) * (size_t)(plen + 16));
    int nt = llama_tokenize(vocab, prompt, plen, toks, plen + 16, false, true);
    if (nt < 0) { fprintf(stderr, "tokenize failed\n"); return 1; }

    for (int run = 0; run < runs; run++) {
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 4096;
        cp.n_batch = 512;
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        struct llama_context *ctx = llama_init_from_model(model, cp);
        struct llama_sampler *smpl = llama_sampler_init_greedy();
        double t0 = now();
        for (int i = 0; i < nt; i += 512) {
            int nb = nt - i < 512 ? nt - i : 512;
            if (llama_decode(ctx, llama_batch_get_one(toks + i, nb))) { fprintf(stderr, "decode failed\n"); return 1; }
        }
        llama_token tok = llama_sampler_sample(smpl, ctx, -1);
        double t1 = now();
        int produced = 1;
        while (produced < n_gen && !llama_vocab_is_eog(vocab, tok)) {
            if (llama_decode(ctx, llama_batch_get_one(&tok, 1))) { fprintf(stderr, "decode failed\n"); return 1; }
            tok = llama_sampler_sample(smpl, ctx, -1);
            produced++;
        }
        double t2 = now();
        printf("run %d: prompt %d tokens, first token %.0f ms, prompt %.1f tok/s, generation %.1f tok/s (%d tokens)\n",
               run + 1, nt, (t1 - t0) * 1000.0, nt / (t1 - t0), (produced - 1) / (t2 - t1), produced);
        fflush(stdout);
        llama_sampler_free(smpl);
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
