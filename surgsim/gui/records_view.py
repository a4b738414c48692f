"""The records window of a simulation lab: sign in, then a trainee's own page or an
educator's (admin's) cohort dashboard.

Roles are enforced by the records layer (:mod:`surgsim.records.auth`); the window
only reflects them:

- a **trainee** gets their own page (released attempts only) and nothing else: no
  dashboard, no other trainee;
- an **educator** gets the dashboard of the cohorts they teach (release toggles,
  debrief notes, exports) and the pages of those trainees;
- an **admin** (or the station itself, for a database without accounts) gets every
  cohort and every trainee.

Nothing here reads the database on the GUI thread: sign-in, the account check and
every page's reads, writes and exports run on the records thread
(:mod:`surgsim.gui.records_worker`), with a busy line meanwhile; an unreachable
database is reported in the page's error line, never a frozen window.

Entry points for the simulator window and ``surgsim app --lab``::

    window = open_records_window(records, parent)       # starts at the sign-in page
    ok, access = SignInDialog.sign_in(records, parent)  # a modal sign-in alone
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from surgsim.gui.records_dashboard import CohortDashboard
from surgsim.gui.records_export import ExportPanel, ExportScope
from surgsim.gui.records_trainee import TraineePage, error_label, person_label, show_error
from surgsim.gui.records_worker import RecordsJobs, busy_label
from surgsim.records.auth import AccessDeniedError

__all__ = [
    "CohortDashboard",
    "RecordsWindow",
    "SignInDialog",
    "SignInForm",
    "TraineePage",
    "open_records_window",
]

_UNSET = object()


class SignInForm(QWidget):
    """User name and password against the records' local accounts.

    When the database has no accounts, the fields are disabled and a button offers
    to continue as the station (nobody signed in: every attempt is visible), with
    a note saying so and how to add the first admin.

    The account check and the password check (argon2, deliberately slow) run on the
    records thread; :attr:`busy` is True meanwhile.

    Signals
    -------
    signed_in(object)
        The :class:`~surgsim.records.auth.AccessContext`, or None for the station.
    sign_in_failed(str)
        The reason (also shown in the error label).
    accounts_checked()
        :meth:`check_accounts` finished (:attr:`has_accounts` is known, or the error shown).
    """

    signed_in = Signal(object)
    sign_in_failed = Signal(str)
    accounts_checked = Signal()

    def __init__(self, records, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("sign_in_form")
        self.records = records
        layout = QVBoxLayout(self)
        title = QLabel("Sign in to the lab records")
        title.setFont(QFont(title.font().family(), 13, QFont.Weight.Bold))
        layout.addWidget(title)
        where = QLabel(f"Database: {records.masked_url}")
        where.setWordWrap(True)
        where.setStyleSheet("color: #555;")
        layout.addWidget(where)
        form = QFormLayout()
        self.user_edit = QLineEdit()
        self.user_edit.setObjectName("user")
        self.password_edit = QLineEdit()
        self.password_edit.setObjectName("password")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.returnPressed.connect(self.try_sign_in)
        self.user_edit.returnPressed.connect(self.password_edit.setFocus)
        form.addRow("User name:", self.user_edit)
        form.addRow("Password:", self.password_edit)
        layout.addLayout(form)
        self.error = error_label()
        self.error.setObjectName("sign_in_error")
        layout.addWidget(self.error)
        self.busy_label = busy_label()
        layout.addWidget(self.busy_label)
        self.jobs = RecordsJobs(self, self.busy_label, self.error)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.hide()
        layout.addWidget(self.note)
        self.buttons = buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.station_button = QPushButton("Continue as the station")
        self.station_button.setObjectName("station")
        self.station_button.clicked.connect(self.continue_as_station)
        self.station_button.hide()
        buttons.addWidget(self.station_button)
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.setObjectName("sign_in")
        self.sign_in_button.setDefault(True)
        self.sign_in_button.clicked.connect(self.try_sign_in)
        buttons.addWidget(self.sign_in_button)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.has_accounts = True
        self.check_accounts()

    @property
    def busy(self) -> bool:
        """True while the form waits for the database."""
        return self.jobs.busy

    def check_accounts(self) -> None:
        """Offer the station when the database has no accounts (or show why it cannot be read).

        Read on the records thread; the sign-in button waits for the answer.
        """
        show_error(self.error, "")
        self.sign_in_button.setEnabled(False)
        self.station_button.setEnabled(False)
        records = self.records
        self.jobs.run(records.has_accounts, self._accounts_known,
                      "Opening the lab database...", on_error=self._accounts_unknown)

    def _accounts_unknown(self, message: str) -> None:
        show_error(self.error, message)
        self.has_accounts = True  # unknown: never offer the station on an error
        self.station_button.hide()
        self.note.hide()
        self.sign_in_button.setEnabled(True)  # trying again re-reads the database
        self.accounts_checked.emit()

    def _accounts_known(self, has_accounts: bool) -> None:
        self.has_accounts = bool(has_accounts)
        for w in (self.user_edit, self.password_edit, self.sign_in_button):
            w.setEnabled(self.has_accounts)
        self.station_button.setEnabled(True)
        self.station_button.setVisible(not self.has_accounts)
        self.note.setVisible(not self.has_accounts)
        if not self.has_accounts:
            self.note.setText(
                "This database has no accounts yet, so nobody can sign in. You may continue "
                "as the station: nobody is signed in and every attempt is visible. To enforce "
                "roles, add the first admin with `surgsim users add NAME --role admin`."
            )
            self.station_button.setDefault(True)
        self.accounts_checked.emit()

    def try_sign_in(self) -> bool:
        """Check the user name and password on the records thread.

        :attr:`signed_in` follows on success, :attr:`sign_in_failed` (and the error
        shown) otherwise. Returns False when nothing was tried (no user name, or a
        check already running).
        """
        user = self.user_edit.text().strip()
        if not user:
            show_error(self.error, "Type your user name.")
            self.user_edit.setFocus()
            return False
        if self.busy:
            return False
        show_error(self.error, "")
        password = self.password_edit.text()
        self.password_edit.clear()
        self.sign_in_button.setEnabled(False)
        records = self.records
        self.jobs.run(lambda: records.login(user, password), self._signed_in,
                      f"Signing in {user}...", on_error=self._sign_in_failed)
        return True

    def _signed_in(self, access) -> None:
        self.sign_in_button.setEnabled(True)
        show_error(self.error, "")
        self.signed_in.emit(access)

    def _sign_in_failed(self, message: str) -> None:
        self.sign_in_button.setEnabled(True)
        show_error(self.error, message)
        self.password_edit.setFocus()
        self.sign_in_failed.emit(message)

    def continue_as_station(self) -> None:
        """Continue without signing in (only when the database has no accounts: checked again)."""
        show_error(self.error, "")
        records = self.records

        def checked(has_accounts: bool) -> None:
            self._accounts_known(has_accounts)
            if self.has_accounts:
                show_error(self.error, "This database has accounts: sign in.")
                self.sign_in_failed.emit("This database has accounts: sign in.")
            else:
                self.signed_in.emit(None)

        self.jobs.run(records.has_accounts, checked, "Opening the lab database...",
                      on_error=self._accounts_unknown)


class SignInDialog(QDialog):
    """A modal sign-in (see :class:`SignInForm`).

    After ``exec()`` returns ``Accepted``: :attr:`access` is the signed-in person's
    AccessContext, or None with :attr:`station` True for the station of a database
    without accounts.
    """

    def __init__(self, records, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("surgsim: sign in")
        self.access = None
        self.station = False
        layout = QVBoxLayout(self)
        self.form = SignInForm(records, self)
        layout.addWidget(self.form)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        self.form.buttons.insertWidget(1, cancel)
        self.form.signed_in.connect(self._done)

    def _done(self, access) -> None:
        self.access = access
        self.station = access is None
        self.accept()

    @classmethod
    def sign_in(cls, records, parent=None) -> tuple[bool, object]:
        """Run the dialog; ``(accepted, AccessContext or None for the station)``."""
        dialog = cls(records, parent)
        ok = dialog.exec() == QDialog.DialogCode.Accepted
        return ok, dialog.access


class RecordsWindow(QMainWindow):
    """Sign-in page, then the pages the signed-in person's role allows.

    Parameters
    ----------
    records : Records
        The lab database (not closed by the window).

    Attributes
    ----------
    access : AccessContext or None
        Who is signed in (None: nobody yet, or the station; see :attr:`signed_in`).
    signed_in : bool
    sign_in_form : SignInForm
    tabs : QTabWidget or None
        The pages after sign-in.
    trainee_page : TraineePage or None
        A trainee's own page (trainees), or the last trainee opened from the dashboard.
    dashboard : CohortDashboard or None
        Educators, admins and the station only.
    """

    def __init__(self, records, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("records_window")
        self.records = records
        self.access = None
        self.signed_in = False
        self.tabs: QTabWidget | None = None
        self.trainee_page: TraineePage | None = None
        self.dashboard: CohortDashboard | None = None
        self.trainee_export: ExportPanel | None = None
        self.setWindowTitle("surgsim: lab records")
        self.resize(1200, 850)
        self.stack = QStackedWidget()
        self.setCentralWidget(self.stack)
        self.sign_in_form = SignInForm(records)
        self.sign_in_form.signed_in.connect(self.enter)
        holder = QWidget()
        hl = QHBoxLayout(holder)
        hl.addStretch(1)
        self.sign_in_form.setMaximumWidth(520)
        hl.addWidget(self.sign_in_form, stretch=2)
        hl.addStretch(1)
        self.stack.addWidget(holder)
        self.content: QWidget | None = None

    # ------------------------------------------------------------ sign in / out

    def enter(self, access) -> None:
        """Show the pages of ``access`` (None: the station, only for a database without accounts).

        For the station the database is asked first (on the records thread) whether it
        has accounts; the pages appear once it answers no.
        """
        if access is None:
            records = self.records

            def checked(has_accounts: bool) -> None:
                if has_accounts:
                    show_error(self.sign_in_form.error, "This database has accounts: sign in.")
                else:
                    self._show_pages(None)

            self.sign_in_form.jobs.run(records.has_accounts, checked, "Opening the lab database...")
            return
        self._show_pages(access)

    def _show_pages(self, access) -> None:
        self._clear_content()
        self.access = access
        self.signed_in = True
        content = QWidget()
        layout = QVBoxLayout(content)
        bar = QHBoxLayout()
        who = (
            "Station (no accounts in this database: everything is visible)"
            if access is None
            else f"Signed in as {access.username or access.person_id} ({access.role}, {access.person_id})"
        )
        self.who_label = QLabel(who)
        self.who_label.setObjectName("who")
        bar.addWidget(self.who_label, stretch=1)
        out = QPushButton("Sign out")
        out.setObjectName("sign_out")
        out.clicked.connect(self.sign_out)
        bar.addWidget(out)
        layout.addLayout(bar)
        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        layout.addWidget(self.tabs, stretch=1)
        if access is not None and access.role == "trainee":
            self._trainee_home(access)
        else:
            self.dashboard = CohortDashboard(self.records, access)
            self.dashboard.trainee_opened.connect(self.open_trainee)
            self.tabs.addTab(self.dashboard, "Cohort dashboard")
            self.tabs.tabBar().setTabButton(0, self.tabs.tabBar().ButtonPosition.RightSide, None)
        self.content = content
        self.stack.addWidget(content)
        self.stack.setCurrentWidget(content)
        role = "station" if access is None else access.role
        self.setWindowTitle(f"surgsim: lab records ({role})")

    @property
    def busy(self) -> bool:
        """True while any page of the window waits for the database."""
        return any(j.busy for j in self.findChildren(RecordsJobs))

    def _trainee_home(self, access) -> None:
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(0, 0, 0, 0)
        self.trainee_page = page_ = TraineePage(self.records, access, access.person_id)
        pl.addWidget(self.trainee_page, stretch=1)
        records = self.records

        def named(users: list) -> None:  # the heading shows the lab's name for them
            me = next((u for u in users if u["id"] == access.person_id), None)
            page_.set_label(person_label(me, access.person_id))

        page_.jobs.run(lambda: records.list_users(access=access), named, on_error=lambda _m: None)

        def scope() -> ExportScope:
            rows = {i.row() for i in self.trainee_page.history.selectedItems()}
            attempts = self.trainee_page.attempts
            return ExportScope(
                trainee_ids=[access.person_id],
                trainee_id=access.person_id,
                attempt_id=attempts[min(rows)].id if rows else None,
                attempt_ids=[a.id for a in attempts],
            )

        self.trainee_export = ExportPanel(self.records, access, scope, exports=("csv", "json", "report"))
        pl.addWidget(self.trainee_export)
        self.tabs.addTab(page, "My attempts")
        self.tabs.tabBar().setTabButton(0, self.tabs.tabBar().ButtonPosition.RightSide, None)

    def open_trainee(self, trainee_id: str) -> TraineePage:
        """Open (or show again) a trainee's page in a tab (educators, admins, station).

        Raises
        ------
        AccessDeniedError
            A trainee asking for someone else's page (or nobody signed in).
        """
        if not self.signed_in or (
            self.access is not None
            and self.access.role == "trainee"
            and trainee_id != self.access.person_id
        ):
            who = "nobody" if not self.signed_in else f"trainee {self.access.person_id}"
            raise AccessDeniedError(f"{who} may not open the page of {trainee_id}; sign in as an educator")
        for i in range(self.tabs.count()):
            w = self.tabs.widget(i)
            if isinstance(w, TraineePage) and w.trainee_id == trainee_id:
                w.refresh()
                self.tabs.setCurrentIndex(i)
                self.trainee_page = w
                return w
        label = trainee_id
        if self.dashboard is not None:
            label = person_label(self.dashboard.users.get(trainee_id), trainee_id)
        page = TraineePage(self.records, self.access, trainee_id, label=label)
        self.tabs.addTab(page, label)
        self.tabs.setCurrentWidget(page)
        self.trainee_page = page
        return page

    def _close_tab(self, index: int) -> None:
        w = self.tabs.widget(index)
        if w is self.dashboard or (self.access is not None and self.access.role == "trainee"):
            return
        self.tabs.removeTab(index)
        if w is self.trainee_page:
            self.trainee_page = None
        w.deleteLater()

    def _clear_content(self) -> None:
        if self.content is not None:
            self.stack.removeWidget(self.content)
            self.content.deleteLater()
        self.content = None
        self.tabs = None
        self.trainee_page = None
        self.dashboard = None
        self.trainee_export = None

    def sign_out(self) -> None:
        """Forget who signed in and go back to the sign-in page."""
        self._clear_content()
        self.access = None
        self.signed_in = False
        self.setWindowTitle("surgsim: lab records")
        self.sign_in_form.check_accounts()
        self.stack.setCurrentIndex(0)


def open_records_window(records, parent=None, *, access=_UNSET) -> RecordsWindow:
    """Open the records window (shown, not modal) at its sign-in page.

    Parameters
    ----------
    records : Records
        The lab database; the caller keeps it open while the window lives.
    parent : QWidget, optional
        Owner (the window stays a separate top-level window).
    access : AccessContext or None, optional
        Someone already signed in (e.g. through :class:`SignInDialog`): skip the sign-in
        page. None means the station (accepted only for a database without accounts).

    Returns
    -------
    RecordsWindow
    """
    window = RecordsWindow(records, parent)
    if parent is not None:
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if access is not _UNSET:
        window.enter(access)
    window.show()
    return window
