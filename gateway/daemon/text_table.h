/*
 * text_table.h — a plain-text table for the control commands' text output:
 * a header line, then one line per row, columns two spaces apart.
 *
 * CONTRACT
 * Columns are declared once, with a header, a width, an alignment and
 * whether the width may grow. A column that may grow is as wide as its
 * header, its declared width and its widest cell; a fixed one is exactly its
 * declared width (a longer cell overflows it, as printf's widths do). The
 * last column is written as is, never padded, and empty cells at the end of
 * a row are left out, so no line ends in spaces.
 * Cells are copied when a row is added. Nothing is written until
 * text_table_print(), which writes the header line and every row.
 */
#ifndef STRAIT_TEXT_TABLE_H
#define STRAIT_TEXT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define TEXT_TABLE_MAX_COLUMNS 16

struct text_table_column {
	const char *header;
	int width;                   /* at least this wide */
	bool right;                  /* right-aligned, else left */
	bool fixed;                  /* exactly width wide, whatever the cells */
};

struct text_table;

/*
 * A table with these columns (the array must outlive it); NULL when out of
 * memory, or without 1 to TEXT_TABLE_MAX_COLUMNS columns.
 */
struct text_table *text_table_new(const struct text_table_column *cols, size_t n_cols);

/* Adds a row of n_cols cells; false when out of memory (the table stays as it was). */
bool text_table_row(struct text_table *t, const char *const *cells);

/* Writes the header line and every row to out. */
void text_table_print(const struct text_table *t, FILE *out);

void text_table_free(struct text_table *t);

#endif
