"""`dltool cv`: k-fold cross-validation; every fold an ordinary run (see :mod:`dltool.cv.run`)."""
