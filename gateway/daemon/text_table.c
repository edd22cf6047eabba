/*
 * text_table.c — a plain-text table (see text_table.h).
 *
 * CONTRACT
 * Widths are worked out at print time from the header, the declared width
 * and the cells; a row is all or nothing: when a copy fails, the cells
 * copied so far are freed and the row is not added.
 */
#include "gateway/daemon/text_table.h"

#include <stdlib.h>
#include <string.h>

struct text_table {
	const struct text_table_column *cols;
	size_t n_cols;
	char **cells;                /* n_rows * n_cols, row by row */
	size_t n_rows;
	size_t cap_rows;
};

struct text_table *text_table_new(const struct text_table_column *cols, size_t n_cols)
{
	struct text_table *t;

	if (n_cols == 0 || n_cols > TEXT_TABLE_MAX_COLUMNS)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cols = cols;
	t->n_cols = n_cols;
	return t;
}

bool text_table_row(struct text_table *t, const char *const *cells)
{
	char **row;

	if (t->n_rows == t->cap_rows) {
		size_t cap = t->cap_rows ? t->cap_rows * 2 : 8;
		char **v = realloc(t->cells, cap * t->n_cols * sizeof(*v));

		if (!v)
			return false;
		t->cells = v;
		t->cap_rows = cap;
	}
	row = &t->cells[t->n_rows * t->n_cols];
	for (size_t c = 0; c < t->n_cols; c++) {
		row[c] = strdup(cells[c]);
		if (!row[c]) {
			while (c > 0)
				free(row[--c]);
			return false;
		}
	}
	t->n_rows++;
	return true;
}

/* How wide column c is written. */
static int text_table_width(const struct text_table *t, size_t c)
{
	const struct text_table_column *col = &t->cols[c];
	int w = col->width;

	if (col->fixed)
		return w;
	if ((int)strlen(col->header) > w)
		w = (int)strlen(col->header);
	for (size_t r = 0; r < t->n_rows; r++) {
		int n = (int)strlen(t->cells[r * t->n_cols + c]);

		if (n > w)
			w = n;
	}
	return w;
}

/* One line: each cell padded to its column's width, the last one as is. */
static void text_table_line(const struct text_table *t, const int *widths,
			    const char *const *cells, FILE *out)
{
	size_t last = t->n_cols - 1;

	/* empty cells at the end are left out, so no line ends in spaces */
	while (last > 0 && !cells[last][0])
		last--;
	for (size_t c = 0; c <= last; c++) {
		if (c == last && t->cols[c].right)
			fprintf(out, "%*s\n", widths[c], cells[c]);
		else if (c == last)
			fprintf(out, "%s\n", cells[c]);
		else if (t->cols[c].right)
			fprintf(out, "%*s  ", widths[c], cells[c]);
		else
			fprintf(out, "%-*s  ", widths[c], cells[c]);
	}
}

void text_table_print(const struct text_table *t, FILE *out)
{
	int widths[TEXT_TABLE_MAX_COLUMNS];
	const char *headers[TEXT_TABLE_MAX_COLUMNS];

	for (size_t c = 0; c < t->n_cols; c++) {
		widths[c] = text_table_width(t, c);
		headers[c] = t->cols[c].header;
	}
	text_table_line(t, widths, headers, out);
	for (size_t r = 0; r < t->n_rows; r++)
		text_table_line(t, widths, (const char *const *)&t->cells[r * t->n_cols], out);
}

void text_table_free(struct text_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
