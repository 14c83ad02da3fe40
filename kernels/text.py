"""Structure scanners for numeric text formats (CSV, LIBSVM): bytes in, arrays out.

A scanner makes one pass over a block of whole lines. It checks each line's structure, records
which line each record (non-blank line) came from, and writes a *cleaned* copy of the block in
which every separator is a space, ready for ``numpy.fromstring(clean, sep=" ")``, which turns the
numbers into floats exactly as ``float()`` would. Converting digits is left to NumPy on purpose:
a correctly rounded float parser is hard to write, and an approximate one would make a file read
differ in the last bit from the same data held in memory.

Each scanner returns ``(records, bad_line, code)``: ``bad_line`` is ``-1`` when every line is
well formed, else the 0-based index (within the block) of the first bad line and ``code`` says
what is wrong with it (see :data:`CSV_PROBLEMS` and :data:`LIBSVM_PROBLEMS`).
"""

from __future__ import annotations

from mpigd.kernels.jit import kernel

NEWLINE, SPACE, TAB, CR, COLON, HASH = 10, 32, 9, 13, 58, 35

CSV_PROBLEMS = {
    1: "wrong number of fields",
    2: "empty field",
    3: "a field holds more than one value",
}
LIBSVM_PROBLEMS = {
    1: "the label must be a plain number (no ':')",
    2: "a feature must be written index:value",
}


@kernel
def _blank(c):
    return c == SPACE or c == TAB or c == CR


@kernel
def csv_scan(buf, delimiter, n_fields, clean, line_of_record):
    """Check that every non-blank line of ``buf`` has ``n_fields`` non-empty fields.

    ``clean`` (same length as ``buf``) receives the block with delimiters, tabs, carriage
    returns and newlines turned into spaces; ``line_of_record`` (at least one slot per line)
    receives the block-local line index of each record.
    """
    n = buf.shape[0]
    records = 0
    line = 0
    i = 0
    while i < n:
        fields = 1
        state = 0  # 0: field empty so far, 1: inside a value, 2: blank after a value
        problem = 0
        any_value = False
        j = i
        while j < n and buf[j] != NEWLINE:
            c = buf[j]
            if c == delimiter:
                if state == 0 and problem == 0:
                    problem = 2
                fields += 1
                state = 0
                clean[j] = SPACE
            elif _blank(c):
                if state == 1:
                    state = 2
                clean[j] = SPACE
            else:
                if state == 2 and problem == 0:
                    problem = 3
                state = 1
                any_value = True
                clean[j] = c
            j += 1
        if j < n:
            clean[j] = SPACE
        if any_value or fields > 1:
            if state == 0 and problem == 0:
                problem = 2
            if problem == 0 and fields != n_fields:
                problem = 1
            if problem != 0:
                return records, line, problem
            line_of_record[records] = line
            records += 1
        line += 1
        i = j + 1
    return records, -1, 0


@kernel
def libsvm_scan(buf, clean, nnz, line_of_record):
    """Check LIBSVM lines ``label index:value ...``; drop ``qid:`` tokens and ``#`` comments.

    ``clean`` receives the block with colons and blanks turned into spaces and comments and
    ``qid:`` tokens blanked out, so that it reads as ``label index value index value ...``
    per record; ``nnz[k]`` receives the number of features of record ``k`` and
    ``line_of_record[k]`` its block-local line index. Lines with nothing but blanks or a
    comment are not records.
    """
    n = buf.shape[0]
    records = 0
    line = 0
    i = 0
    while i < n:
        tokens = 0
        count = 0
        j = i
        comment = False
        while j < n and buf[j] != NEWLINE:
            c = buf[j]
            if comment or c == HASH:
                comment = True
                clean[j] = SPACE
                j += 1
                continue
            if _blank(c):
                clean[j] = SPACE
                j += 1
                continue
            # one token: [j, k)
            k = j
            colons = 0
            colon_at = -1
            while k < n and buf[k] != NEWLINE and buf[k] != HASH and not _blank(buf[k]):
                if buf[k] == COLON:
                    colons += 1
                    colon_at = k
                    clean[k] = SPACE
                else:
                    clean[k] = buf[k]
                k += 1
            if tokens == 0:
                if colons != 0:
                    return records, line, 1
            elif (k - j >= 4 and buf[j] == 113 and buf[j + 1] == 105 and buf[j + 2] == 100
                    and buf[j + 3] == COLON):  # "qid:": a ranking group, ignored
                for m in range(j, k):
                    clean[m] = SPACE
            else:
                if colons != 1 or colon_at == j or colon_at == k - 1:
                    return records, line, 2
                count += 1
            tokens += 1
            j = k
        if j < n:
            clean[j] = SPACE
        if tokens > 0:
            nnz[records] = count
            line_of_record[records] = line
            records += 1
        line += 1
        i = j + 1
    return records, -1, 0
