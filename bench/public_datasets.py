#!/usr/bin/env python3
"""Rebuild the CSVs bench/quality.py reads for short texts, SMS spam and long documents from public raw files.

The raw files come from public GitHub repositories (commits below); the data never enters this repository.
bench/README.md lists what each set is and the numbers measured on it.

Standard library only.  Every output is UTF-8 CSV with exactly two columns,
``text,label`` (label = class name), written with the csv module.

Usage
-----
  python bench/public_datasets.py sms_spam RAW_SMS_TSV            [--out DIR] [--dedupe]
  python bench/public_datasets.py short    TRAIN_5500_LABEL TREC_10_LABEL [--out DIR]
  python bench/public_datasets.py long     UNGDC_TXT_FOLDER       [--out DIR]
  python bench/public_datasets.py emotions EKMAN_FOLDER           [--out DIR]
  python bench/public_datasets.py intents  TRAIN_CSV TEST_CSV     [--out DIR]
  python bench/public_datasets.py sentiment RT_POLARITY_POS RT_POLARITY_NEG [--out DIR]
  python bench/public_datasets.py reviews  IMDB_DATASET_CSV       [--out DIR]
  python bench/public_datasets.py news     AG_NEWS_TEST_CSV       [--out DIR]
  python bench/public_datasets.py medical  MEDICAL_TC_TEST_CSV    [--out DIR]
  python bench/public_datasets.py german   GNAD_TEST_CSV          [--out DIR]

``--out`` defaults to /tmp/lightft-data; each dataset is written
to OUT/<name>/data.csv and a short summary is printed.

Raw files (the repository and commit each was taken from):
  sms_spam: justmarkham/DAT8 @ ff04af83e8ac1409cd86f3cb3524e4141644c5a1, data/sms.tsv
  short:    trangnt08/q_class_en @ 3ffc1b21503e89e5eab6bf12ab9eb46d16a14851,
            data/train_5500.label and data/TREC_10.label
  long:     SarahFranzen/Emotions_in_the_United_Nations_General_Debates
            @ 3b277c419f85fd6e1f14f69a5fd29a3a6b59fc96, data/data_original/TXT/
            (UN General Debate Corpus v12, 1946-2023/24, one .txt per speech)
  emotions: monologg/GoEmotions-pytorch @ b75f9d3 (git log), data/ekman/{train,dev,test}.tsv and labels.txt
            (GoEmotions, Demszky et al., ACL 2020, CC BY 4.0: Reddit comments, Ekman's 6 emotions + neutral)

  intents:  PolyAI-LDN/task-specific-datasets @ 57ec275d8078af65b7731c2a98be812d844a6d6b, banking_data/{train,test}.csv
            (BANKING77, Casanueva et al., 2020, CC BY 4.0: online-banking queries, 77 intents)
  sentiment: yoonkim/CNN_sentence @ 23e0e1f, rt-polarity.pos and rt-polarity.neg
            (sentence polarity dataset v1.0, Pang & Lee, ACL 2005: 5,331 positive and 5,331 negative
            movie-review snippets from Rotten Tomatoes, lower-cased and tokenised; Windows-1252)
  reviews:  Srija17/Sentiment-Analyzer @ 1cb34a3, "IMDB Dataset.csv" (columns review,sentiment): the first
            999 rows of the Kaggle "IMDB Dataset of 50K Movie Reviews" (Large Movie Review Dataset, Maas et
            al., ACL 2011): whole user reviews, median ~180 words, 501 positive / 498 negative
  news:     suuuch/TransformerClassification @ 0d9808e1978c8468b4f8f08a44c5be99d058aa7b,
            data/ag_news_csv/test.csv (AG's news corpus, Zhang, Zhao & LeCun, NeurIPS 2015: the 7,600-row
            test file, columns class index 1-4, title, description; 1,900 per class)
  medical:  sebischair/Medical-Abstracts-TC-Corpus @ 70a2d91, medical_tc_test.csv (Schopf et al., ICNLSP
            2022: 2,888 PubMed-style abstracts, columns condition_label 1-5, medical_abstract; class names from
            medical_tc_labels.csv; CC BY-SA 3.0)
  german:   tblock/10kGNAD @ da845fe, test.csv (Ten Thousand German News Articles Dataset, Block 2019, from
            the One Million Posts Corpus of derStandard.at: 1,028 Austrian news articles in German, 9 topics;
            no header, ``label;'text'`` with ' as the quote; CC BY-NC-SA 4.0)

``emotions`` is multi-label: its label column holds the label names joined by ``|`` (read it with
``data.label_separator='|'``); every other set has one class name per row.
"""
import argparse
import collections
import csv
import html
import os
import random
import re
import statistics
import sys

SEED = 0


# --------------------------------------------------------------------------- helpers

def write_csv(rows, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["text", "label"])
        for text, label in rows:
            w.writerow([text, label])


def stratified_subsample(rows, n_max, seed=SEED):
    """Keep at most n_max rows, each class keeping its share (largest remainder).

    The original order of the kept rows is preserved.
    """
    if len(rows) <= n_max:
        return list(rows)
    by_class = collections.defaultdict(list)
    for i, (_, label) in enumerate(rows):
        by_class[label].append(i)
    total = len(rows)
    quotas = {c: n_max * len(ix) / total for c, ix in by_class.items()}
    take = {c: int(q) for c, q in quotas.items()}
    left = n_max - sum(take.values())
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - take[c]), c))[:left]:
        take[c] += 1
    rng = random.Random(seed)
    keep = set()
    for c in sorted(by_class):
        ix = list(by_class[c])
        rng.shuffle(ix)
        keep.update(ix[: take[c]])
    return [rows[i] for i in sorted(keep)]


def summarize(name, rows):
    words = sorted(len(t.split()) for t, _ in rows)
    counts = collections.Counter(label for _, label in rows)
    p90 = words[min(len(words) - 1, int(round(0.9 * (len(words) - 1))))]
    print(f"{name}: {len(rows)} rows, {len(counts)} classes")
    for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {c}: {n} ({100 * n / len(rows):.1f}%)")
    print(f"  words per text: median {statistics.median(words):g}, p90 {p90}, "
          f"min {words[0]}, max {words[-1]}")


def read_header_csv(path, columns, text_column, label_column, labels, clean=None):
    """(text, label) rows of a CSV whose header is exactly ``columns``: each raw label must be a key of
    ``labels`` (its value is the class name written), the text has its whitespace collapsed (after ``clean``),
    and an empty text is skipped. A header or label that differs stops the script naming the file and line."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != list(columns):
            sys.exit(f"{path}: expected the columns {','.join(columns)}, got {reader.fieldnames}")
        for n, r in enumerate(reader, 2):
            if r[label_column] not in labels:
                sys.exit(f"{path}:{n}: unexpected label {r[label_column]!r}")
            text = " ".join((clean(r[text_column]) if clean else r[text_column]).split())
            if text:
                rows.append((text, labels[r[label_column]]))
    return rows


def dedupe(rows):
    """Drop exact duplicate texts (keep the first); report conflicts."""
    seen = {}
    out = []
    conflicts = 0
    for text, label in rows:
        if text in seen:
            if seen[text] != label:
                conflicts += 1
            continue
        seen[text] = label
        out.append((text, label))
    dropped = len(rows) - len(out)
    if dropped:
        print(f"  dropped {dropped} duplicate texts ({conflicts} with a different label)")
    return out


# --------------------------------------------------------------------------- sms_spam

def cmd_sms_spam(args):
    """UCI SMS Spam Collection: one message per line, ``label<TAB>text``."""
    rows = []
    with open(args.raw[0], encoding="utf-8", newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            label, sep, text = line.partition("\t")
            if not sep or label not in ("ham", "spam"):
                sys.exit(f"line {n}: unexpected format: {line[:80]!r}")
            rows.append((text.strip(), label))
    if len(rows) != 5574:
        print(f"warning: expected 5574 messages, got {len(rows)}", file=sys.stderr)
    # The public collection repeats some messages (414 extra copies once
    # surrounding whitespace is stripped).  By default they are kept, so that the file is the standard
    # 5,574-message collection; --dedupe drops the repeats.
    if args.dedupe:
        rows = dedupe(rows)
    return "sms_spam", rows


# --------------------------------------------------------------------------- short (TREC-6)

TREC_COARSE = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "numeric",
}


def read_trec(path):
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            # The files are ASCII apart from, in some copies, one stray byte.
            line = raw.decode("utf-8", errors="replace").replace("\ufffd", " ")
            line = line.strip()
            if not line:
                continue
            tag, _, text = line.partition(" ")
            coarse, _, fine = tag.partition(":")
            if coarse not in TREC_COARSE or not fine:
                sys.exit(f"{path}:{n}: unexpected label {tag!r}")
            rows.append((" ".join(text.split()), TREC_COARSE[coarse]))
    return rows


def cmd_short(args):
    """TREC question classification, 6 coarse classes; train (5,452) + TREC-10 test (500).

    Exact duplicate questions are dropped (first occurrence kept) so that a
    random split cannot put the same question on both sides.  The result is
    below the 6,000-row cap, so no subsampling happens.
    """
    if len(args.raw) != 2:
        sys.exit("short needs two files: train_5500.label TREC_10.label")
    train = read_trec(args.raw[0])
    test = read_trec(args.raw[1])
    print(f"  read {len(train)} train + {len(test)} test questions")
    rows = dedupe(train + test)
    rows = stratified_subsample(rows, 6000)
    return "short", rows


# --------------------------------------------------------------------------- long (UN General Debates)

# Continent of each speaking delegation, from the ISO 3166-1 alpha-3 code that
# starts each file name.  Generated from the ``continent`` column of
# country_converter 1.3.2 (PyPI, file country_converter/country_data.tsv; UN M49
# continents, "America" renamed "americas"), plus four codes of states that no
# longer exist, which that table lacks: CSK (Czechoslovakia), DDR (German
# Democratic Republic) and YUG (Yugoslavia) -> europe, YMD (South Yemen) -> asia.
# "EU" (speeches on behalf of the European Union) has no continent and is left out.
CONTINENT_CODES = {
    "africa": """
        AGO BDI BEN BFA BWA CAF CIV CMR COD COG COM CPV DJI DZA EGY ERI
        ETH GAB GHA GIN GMB GNB GNQ KEN LBR LBY LSO MAR MDG MLI MOZ MRT
        MUS MWI NAM NER NGA RWA SDN SEN SLE SOM SSD STP SWZ SYC TCD TGO
        TUN TZA UGA ZAF ZMB ZWE
    """,
    "americas": """
        ARG ATG BHS BLZ BOL BRA BRB CAN CHL COL CRI CUB DMA DOM ECU GRD
        GTM GUY HND HTI JAM KNA LCA MEX NIC PAN PER PRY SLV SUR TTO URY
        USA VCT VEN
    """,
    "asia": """
        AFG ARE ARM AZE BGD BHR BRN BTN CHN CYP GEO IDN IND IRN IRQ ISR
        JOR JPN KAZ KGZ KHM KOR KWT LAO LBN LKA MDV MMR MNG MYS NPL OMN
        PAK PHL PRK PSE QAT SAU SGP SYR THA TJK TKM TLS TUR UZB VNM YEM
        YMD
    """,
    "europe": """
        ALB AND AUT BEL BGR BIH BLR CHE CZE DEU DNK ESP EST FIN FRA GBR
        GRC HRV HUN IRL ISL ITA LIE LTU LUX LVA MCO MDA MKD MLT MNE NLD
        NOR POL PRT ROU RUS SMR SRB SVK SVN SWE UKR VAT CSK DDR YUG
    """,
    "oceania": """
        AUS FJI FSM KIR MHL NRU NZL PLW PNG SLB TON TUV VUT WSM
    """,
}
CONTINENT = {code: cont for cont, codes in CONTINENT_CODES.items() for code in codes.split()}

UNGD_NAME = re.compile(r"^([A-Z]{2,3})_(\d{2})_(\d{4})\.txt$")


def cmd_long(args):
    """UN General Debate Corpus (UNGDC, 1946-2024): one speech per file.

    RAW is the corpus's ``TXT`` folder (``TXT/Session NN - YYYY/ISO_NN_YYYY.txt``).
    Label = continent of the speaking state (5 classes).  Whitespace, line
    breaks included, is collapsed to single spaces.  A stratified subsample of
    2,000 speeches (seed 0) is kept.
    """
    root = args.raw[0]
    rows, skipped = [], collections.Counter()
    for session in sorted(os.listdir(root)):
        folder = os.path.join(root, session)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            m = UNGD_NAME.match(name)
            if not m:
                skipped["not a speech file"] += 1
                continue
            label = CONTINENT.get(m.group(1))
            if label is None:
                skipped[f"no continent for {m.group(1)}"] += 1
                continue
            with open(os.path.join(folder, name), "rb") as f:
                text = f.read().decode("utf-8-sig")
            text = " ".join(text.split())
            if not text:
                skipped["empty"] += 1
                continue
            rows.append((text, label))
    print(f"  read {len(rows)} speeches; skipped: {dict(skipped)}")
    rows = stratified_subsample(rows, 2000)
    return "long", rows


# --------------------------------------------------------------------------- emotions (multi-label)

def cmd_emotions(args):
    """GoEmotions with Ekman's taxonomy: 7 labels (anger, disgust, fear, joy, neutral, sadness, surprise);
    a comment may carry several (9% do).

    RAW is the folder holding ``labels.txt`` and ``train.tsv``/``dev.tsv``/``test.tsv`` (text, comma-separated
    label ids, comment id).  All three are pooled, exact duplicate texts dropped, and 4,000 comments kept
    (stratified by label set, seed 0); the label column is the names joined by ``|``.
    """
    root = args.raw[0]
    with open(os.path.join(root, "labels.txt"), encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    rows = []
    for split in ("train", "dev", "test"):
        with open(os.path.join(root, f"{split}.tsv"), encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2 or not parts[0].strip():
                    continue
                ids = sorted({int(i) for i in parts[1].split(",") if i.strip()})
                rows.append((" ".join(parts[0].split()), "|".join(names[i] for i in ids)))
    rows = stratified_subsample(dedupe(rows), 4000)
    several = sum("|" in label for _, label in rows)
    print(f"  {several} of {len(rows)} comments ({100 * several / len(rows):.1f}%) carry several labels")
    return "emotions", rows


# --------------------------------------------------------------------------- intents (BANKING77)

def cmd_intents(args):
    """BANKING77 (Casanueva et al., 2020, CC BY 4.0): online-banking customer queries, 77 fine-grained intents.

    RAW is ``train.csv`` and ``test.csv`` (columns ``text,category``).  Both are pooled, exact duplicate
    queries dropped, and 6,000 kept (stratified, seed 0: ~78 per intent), so the set tests many classes with
    few examples each, at the CPU cost of the short-text set.
    """
    if len(args.raw) != 2:
        sys.exit("intents needs two files: banking_data/train.csv banking_data/test.csv")
    rows = []
    for path in args.raw:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != ["text", "category"]:
                sys.exit(f"{path}: expected the columns text,category, got {reader.fieldnames}")
            rows += [(" ".join(r["text"].split()), r["category"]) for r in reader if r["text"].strip()]
    print(f"  read {len(rows)} queries")
    rows = stratified_subsample(dedupe(rows), 6000)
    return "intents", rows


# --------------------------------------------------------------------------- sentiment (movie reviews)

def cmd_sentiment(args):
    """Sentence polarity v1.0 (Pang & Lee, 2005): one review snippet per line, positive file then negative.

    A kind of task none of the other sets is: the label is the writer's opinion, not the topic, so the words
    that carry it are few and their order matters ("not bad"). The files are Windows-1252 (curly quotes,
    dashes, accented names); every snippet is kept once (exact repeats dropped).
    """
    if len(args.raw) != 2:
        sys.exit("sentiment needs two files: rt-polarity.pos rt-polarity.neg")
    rows = []
    for path, label in zip(args.raw, ("positive", "negative"), strict=True):
        with open(path, encoding="cp1252", newline="") as f:
            rows += [(" ".join(line.split()), label) for line in f if line.strip()]
    print(f"  read {len(rows)} snippets")
    return "sentiment", dedupe(rows)


# --------------------------------------------------------------------------- reviews (IMDB, whole reviews)

def cmd_reviews(args):
    """Whole IMDB user reviews (Maas et al., 2011), binary sentiment, a few hundred labelled examples.

    Unlike ``sentiment``'s snippets these are paragraphs (median ~180 words, 12% over 512 tokens) whose
    verdict often comes at the end, and the set is as small as many of lightft's users start with. The
    HTML line breaks of the scraped text (``<br />``) become spaces.
    """
    rows = read_header_csv(args.raw[0], ["review", "sentiment"], "review", "sentiment",
                           {"positive": "positive", "negative": "negative"},
                           clean=lambda t: re.sub(r"<br\s*/?>", " ", t))
    print(f"  read {len(rows)} reviews")
    return "reviews", dedupe(rows)


# --------------------------------------------------------------------------- news (AG News)

AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")  # classes.txt: class index 1-4 in this order


def cmd_news(args):
    """AG News (Zhang et al., 2015): news-wire headlines with their one-sentence description, 4 topics.

    Topic classification like BBC, but from ~40 words instead of whole articles, on wire copy of another
    decade and publisher, so it tests the default on news it was not tuned on. The text is the title and the
    description joined by a space. The scrape's broken escapes are undone (``\\`` was a line break, ``#36;``
    the character 36, `` quot;`` a double quote) and HTML entities decoded (``&lt;DELL.O&gt;`` -> ``<DELL.O>``);
    the few HTML tags left in descriptions stay, as a user's scraped data would have them.
    """
    rows = []
    with open(args.raw[0], encoding="utf-8", newline="") as f:
        for n, r in enumerate(csv.reader(f), 1):
            if len(r) != 3 or r[0] not in ("1", "2", "3", "4"):
                sys.exit(f"{args.raw[0]}:{n}: expected class index 1-4, title, description; got {r[:1]}")
            text = f"{r[1]} {r[2]}".replace("\\", " ")
            text = re.sub(r" ?#(\d+);", lambda m: chr(int(m.group(1))), text)
            text = html.unescape(re.sub(r"(?<![&\w])quot;", '"', text))
            text = " ".join(text.split())
            if text:
                rows.append((text, AG_NEWS_CLASSES[int(r[0]) - 1]))
    print(f"  read {len(rows)} news items")
    return "news", dedupe(rows)


# --------------------------------------------------------------------------- medical (abstracts)

MEDICAL_CLASSES = ("neoplasms", "digestive system diseases", "nervous system diseases",
                   "cardiovascular diseases", "general pathological conditions")  # medical_tc_labels.csv, 1-5


def cmd_medical(args):
    """Medical abstracts (Schopf et al., 2022): which disease class an abstract is about, 5 classes.

    A domain the default encoder saw little of (clinical vocabulary, where TF-IDF's exact terms are strong),
    and one class, "general pathological conditions" (a third of the rows), that overlaps the other four, so
    every model's ceiling is low. The raw file repeats 118 abstracts; they are dropped here.
    """
    rows = read_header_csv(args.raw[0], ["condition_label", "medical_abstract"], "medical_abstract",
                           "condition_label", {str(i): name for i, name in enumerate(MEDICAL_CLASSES, 1)})
    print(f"  read {len(rows)} abstracts")
    return "medical", dedupe(rows)


# --------------------------------------------------------------------------- german (10kGNAD)

def cmd_german(args):
    """German news articles (10kGNAD), 9 topics: text in a language the default model's vocabulary is not for.

    all-MiniLM-L6-v2 has an English uncased WordPiece vocabulary, so German words fall into many sub-word
    pieces and its pre-training never read German; TF-IDF does not care which language it counts. The file has
    no header and reads ``label;'text'``.
    """
    rows = []
    with open(args.raw[0], encoding="utf-8", newline="") as f:
        for n, r in enumerate(csv.reader(f, delimiter=";", quotechar="'"), 1):
            if len(r) != 2 or not r[0]:
                sys.exit(f"{args.raw[0]}:{n}: expected label;'text', got {len(r)} fields")
            text = " ".join(r[1].split())
            if text:
                rows.append((text, r[0]))
    print(f"  read {len(rows)} articles")
    return "german", dedupe(rows)


# --------------------------------------------------------------------------- main

COMMANDS = {
    "sms_spam": cmd_sms_spam,
    "short": cmd_short,
    "long": cmd_long,
    "emotions": cmd_emotions,
    "intents": cmd_intents,
    "sentiment": cmd_sentiment,
    "reviews": cmd_reviews,
    "news": cmd_news,
    "medical": cmd_medical,
    "german": cmd_german,
}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(COMMANDS))
    p.add_argument("raw", nargs="+", help="raw file(s) or folder, see above")
    p.add_argument("--out", default="/tmp/lightft-data")
    p.add_argument("--dedupe", action="store_true",
                   help="sms_spam only: drop repeated messages (short always dedupes)")
    args = p.parse_args()
    name, rows = COMMANDS[args.dataset](args)
    if not rows:
        sys.exit(f"{args.dataset}: no texts read from {' '.join(args.raw)}")
    path = os.path.join(args.out, name, "data.csv")
    write_csv(rows, path)
    summarize(name, rows)
    print(f"  wrote {path}")


if __name__ == "__main__":
    main()
