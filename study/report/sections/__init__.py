"""The report's sections, one module each, in the order `study.report.document.compose` puts them
together; each turns the analysed tables into its blocks (and figures) with one function,
`section`. `text` writes numbers and names, `sentences` the findings several sections state.
"""
